//! The pure parts of isolation on Windows, tested on every platform: the
//! AppContainer SID a run's name derives to (as userenv's
//! `DeriveAppContainerSidFromAppContainerName` does, computed here so that
//! no profile is registered and Wine's aborting userenv stubs are never
//! reached), and SIDs as strings.

use sha2::{Digest, Sha256};

/// `S-1-15-2-…`: the package authority (15), app container (2), then the
/// first seven little-endian words of SHA-256 over the lower-cased name in
/// UTF-16LE.
pub fn appcontainer_sid(name: &str) -> String {
    let utf16: Vec<u8> = name
        .to_lowercase()
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let hash = Sha256::digest(&utf16);
    let mut subs = vec![2u32];
    subs.extend(
        hash.chunks_exact(4)
            .take(7)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])),
    );
    sid_string(15, &subs)
}

/// A SID in its string form: `S-1-<authority>-<sub>-<sub>…`.
pub fn sid_string(authority: u64, subs: &[u32]) -> String {
    let mut s = format!("S-1-{authority}");
    for v in subs {
        s.push('-');
        s.push_str(&v.to_string());
    }
    s
}

/// The name of a run's AppContainer: unique per process and run, so no
/// two runs share a SID (nor what was granted to one).
pub fn appcontainer_name(pid: u32, run: u64) -> String {
    format!("winsandbox.run.{pid}.{run}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_print_as_windows_does() {
        assert_eq!(sid_string(5, &[18]), "S-1-5-18");
        assert_eq!(sid_string(15, &[2, 1, 4294967295]), "S-1-15-2-1-4294967295");
    }

    #[test]
    fn a_derived_appcontainer_sid_is_the_hash_of_the_lowercased_name() {
        let sid = appcontainer_sid("winsandbox.run.1.0");
        assert!(sid.starts_with("S-1-15-2-"), "{sid}");
        assert_eq!(sid.split('-').count(), 3 + 8, "{sid}");
        // Case does not matter; the name does.
        assert_eq!(sid, appcontainer_sid("WinSandbox.Run.1.0"));
        assert_ne!(sid, appcontainer_sid("winsandbox.run.1.1"));
        // SHA-256 of "" is e3b0c442 98fc1c14 …: its words, little-endian.
        assert_eq!(
            appcontainer_sid(""),
            "S-1-15-2-1120186595-337443992-3371498394-616132505-3829509671-1284741988-463050148"
        );
        // As Python's hashlib computes it for the name in UTF-16LE.
        assert_eq!(
            sid,
            "S-1-15-2-2921759080-1883410987-1839088851-4076766193-1859296127-1066217403-4044054020"
        );
    }
}
