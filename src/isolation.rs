//! The pure parts of isolation on Windows, tested on every platform: the
//! AppContainer SID a run's name derives to (as userenv's
//! `DeriveAppContainerSidFromAppContainerName` does, computed here so that
//! no profile is registered and Wine's aborting userenv stubs are never
//! reached), SIDs as strings, and the security descriptors (SDDL) the
//! supervisor gives what it makes.

use sha2::{Digest, Sha256};

/// `S-1-15-2-…`: the package authority (15), app container (2), then the
/// first seven little-endian words of SHA-256 over the lower-cased name in
/// UTF-16LE.
pub fn appcontainer_sid(name: &str) -> String {
    let mut subs = vec![2u32];
    subs.extend(&name_words(name)[..7]);
    sid_string(15, &subs)
}

/// The little-endian words of SHA-256 over the lower-cased `name` in UTF-16LE.
fn name_words(name: &str) -> [u32; 8] {
    let utf16: Vec<u8> = name
        .to_lowercase()
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let hash = Sha256::digest(&utf16);
    let mut words = [0u32; 8];
    for (w, b) in words.iter_mut().zip(hash.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    words
}

/// The per-run SID a restricted run's token is restricted to, and its
/// grants made to: `S-1-0-…` (the null authority, where Chromium puts its
/// random restricting SIDs: no account or group has one), then four words
/// of the name's hash (`appcontainer_sid`'s, under another authority).
pub fn restricted_run_sid(name: &str) -> String {
    sid_string(0, &name_words(name)[..4])
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

/// `SY`: the LocalSystem account.
const SYSTEM: &str = "SY";
/// `AC`: ALL APPLICATION PACKAGES, which every AppContainer token holds.
const ALL_APP_PACKAGES: &str = "AC";

/// The security descriptor of every kernel object the supervisor makes
/// (its pipes, its jobs): protected, full access for SYSTEM and the
/// supervisor's own user (`user`, a SID string) alone. An AppContainer
/// (not granted) and a restricted token (the user SID is not among its
/// restricting SIDs) cannot open them; an object made with no descriptor
/// at all, as Wine makes it, anyone could.
pub fn supervisor_only_sddl(user: &str) -> String {
    format!("D:P(A;;GA;;;{SYSTEM})(A;;GA;;;{user})")
}

/// File rights to read, write, execute and delete (what "Modify" grants).
pub const FILE_MODIFY: u32 = 0x0013_01BF;

/// File rights to read and execute (`GENERIC_READ | GENERIC_EXECUTE`).
pub const FILE_READ_EXECUTE: u32 = 0x8000_0000 | 0x2000_0000;
/// List and traverse a folder, read its attributes (FILE_LIST_DIRECTORY |
/// FILE_TRAVERSE | FILE_READ_ATTRIBUTES | SYNCHRONIZE).
pub const FOLDER_TRAVERSE: u32 = 0x0010_00A1;

/// One ACL entry a strict run on Windows adds for its AppContainer's SID
/// (and takes back when it ends). `tree`: inherited by what is inside a
/// folder (the system then walks it); else on that file or folder alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WinGrant {
    pub path: String,
    pub access: u32,
    pub tree: bool,
}

/// A Windows path's components, lower-cased (Windows compares paths
/// without case), `\` and `/` alike: `C:\Users\x` is `["c:", "users", "x"]`.
/// Its root is one component: the drive, or a share (`\\server\share`);
/// a `\\?\` prefix is dropped (`\\?\UNC\server\share` is a share).
fn win_components(p: &str) -> Vec<String> {
    let lower = p.replace('/', "\\").to_lowercase();
    let (unc, rest) = match lower
        .strip_prefix(r"\\?\")
        .or_else(|| lower.strip_prefix(r"\\.\"))
    {
        Some(r) => match r.strip_prefix(r"unc\") {
            Some(share) => (true, share),
            None => (false, r),
        },
        None => match lower.strip_prefix(r"\\") {
            Some(share) => (true, share),
            None => (false, lower.as_str()),
        },
    };
    let mut c: Vec<String> = rest
        .split('\\')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect();
    if unc && c.len() >= 2 {
        let share = c.remove(1);
        c[0] = format!(r"\\{}\{share}", c[0]);
    }
    c
}

/// Whether `p` is `root` or inside it.
fn win_under(p: &[String], root: &[String]) -> bool {
    !root.is_empty() && p.starts_with(root)
}

/// What a strict run on Windows grants its AppContainer, or the argument
/// that may not be granted (its name, why), before anything is changed.
/// `system`: the system's folders (the Windows folder, the Program Files),
/// which every AppContainer reads already and nobody but their owner may
/// change: nothing is granted there, and nothing may be written there.
/// `cwd`: None when the run gets a fresh one (made with its ACL). Every
/// path is absolute (the caller makes it so). Each
/// grant is one folder's tree or one file: never a drive, nor a folder
/// that holds the system's (its walk would change the ACL of every file of
/// the system).
pub fn windows_grants(
    program: Option<&str>,
    cwd: Option<&str>,
    readable: &[&str],
    writable: &[&str],
    system: &[&str],
) -> Result<Vec<WinGrant>, (&'static str, String)> {
    let system: Vec<Vec<String>> = system.iter().map(|s| win_components(s)).collect();
    let in_system = |c: &[String]| system.iter().any(|s| win_under(c, s));
    let holds_system = |c: &[String]| system.iter().any(|s| win_under(s, c));
    let grant = |field: &'static str, p: &str, access: u32, write: bool| {
        let c = win_components(p);
        if c.len() <= 1 || holds_system(&c) {
            return Err((
                field,
                format!("{p:?}: a drive, or a folder holding the system's, is never granted: grant the folders inside it the program needs"),
            ));
        }
        if in_system(&c) {
            return if write {
                Err((
                    field,
                    format!("{p:?}: an isolated program may not write the system's files"),
                ))
            } else {
                Ok(None) // every AppContainer reads it already
            };
        }
        Ok(Some(WinGrant {
            path: p.to_string(),
            access,
            tree: true,
        }))
    };
    let mut grants = Vec::new();
    if let Some(d) = cwd {
        grants.extend(grant("cwd", d, FILE_MODIFY, true)?);
    }
    for p in readable {
        grants.extend(grant("readable", p, FILE_READ_EXECUTE, false)?);
    }
    for p in writable {
        grants.extend(grant("writable", p, FILE_MODIFY, true)?);
    }
    // The program and its folder: that file and that folder alone (no walk
    // of a large folder's tree); what else it needs beside it is for
    // `readable`.
    if let Some(prog) = program {
        let c = win_components(prog);
        if c.len() > 1 && !in_system(&c[..c.len() - 1]) {
            let folder = &prog[..prog.rfind(['\\', '/']).unwrap_or(0)];
            if !folder.is_empty() {
                grants.push(WinGrant {
                    path: folder.to_string(),
                    access: FOLDER_TRAVERSE,
                    tree: false,
                });
            }
            grants.push(WinGrant {
                path: prog.to_string(),
                access: FILE_READ_EXECUTE,
                tree: false,
            });
        }
    }
    Ok(grants)
}

/// The descriptor an isolated run's fresh working directory is made with,
/// so it has its final ACL from its creation (nothing is granted
/// afterwards): protected, full control for SYSTEM and the supervisor's
/// user, modify for the run's SID (`run_sid`), each inherited by all
/// inside; `low` (restricted: its program runs at low integrity) adds a
/// low mandatory label, inherited too, so that program may write there.
pub fn fresh_workdir_sddl(user: &str, run_sid: &str, low: bool) -> String {
    let mut s = format!(
        "D:P(A;OICI;FA;;;{SYSTEM})(A;OICI;FA;;;{user})(A;OICI;0x{FILE_MODIFY:x};;;{run_sid})"
    );
    if low {
        s.push_str(&low_label_sddl(true));
    }
    s
}

/// A low mandatory label (no write up): a low-integrity program may write
/// what carries it. `tree`: inherited by all inside a folder.
pub fn low_label_sddl(tree: bool) -> String {
    format!("S:(ML;{};NW;;;LW)", if tree { "OICI" } else { "" })
}

/// `S-1-16-4096`: the low integrity level a restricted run's token has.
pub const LOW_INTEGRITY: &str = "S-1-16-4096";

/// `S-1-5-32-545` (Users), `S-1-1-0` (Everyone), `S-1-5-12` (RESTRICTED).
const USERS: &str = "S-1-5-32-545";
const EVERYONE: &str = "S-1-1-0";
const RESTRICTED_CODE: &str = "S-1-5-12";

/// The restricting SIDs of a restricted run's token (Chromium's
/// `USER_LIMITED` and the run's own): every access must also be granted to
/// one of them. The run's SID (its grants, its objects), Users and Everyone
/// (the system's files, which they read), RESTRICTED (the desktop it runs
/// on), and the logon session's SID where the token has one (the window
/// station). Not the user's SID: what only the user may open, it may not.
pub fn restricting_sids(run_sid: &str, logon: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = [run_sid, USERS, EVERYONE, RESTRICTED_CODE]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(logon.map(str::to_string));
    v
}

/// Whether a group of the supervisor's token stays enabled in a restricted
/// run's token; every other group is made deny-only (it may still deny,
/// never grant: Administrators included). Kept: Everyone, Users,
/// INTERACTIVE, Authenticated Users and the logon session (Chromium's
/// `USER_LIMITED`), and the integrity label (not a group one may disable).
pub fn group_kept(sid: &str) -> bool {
    matches!(sid, EVERYONE | USERS | "S-1-5-4" | "S-1-5-11")
        || sid.starts_with("S-1-5-5-")
        || sid.starts_with("S-1-16-")
}

/// The descriptor of the file the restricted level's canary must read:
/// as `supervisor_only_sddl`, and full access for the canary token's run
/// SID (`run_sid`), no low label (so it must not be written at low
/// integrity).
pub fn canary_granted_sddl(user: &str, run_sid: &str) -> String {
    format!("{}(A;;FA;;;{run_sid})", supervisor_only_sddl(user))
}

/// The default DACL of a restricted run's token, which what its program
/// creates gets: SYSTEM, the user, and the run's own SID (without it the
/// program could not open its own objects: the restricting check needs
/// one of its SIDs). No other run's SID: other runs cannot open them.
pub fn restricted_default_dacl_sddl(user: &str, run_sid: &str) -> String {
    format!("D:(A;;GA;;;{SYSTEM})(A;;GA;;;{user})(A;;GA;;;{run_sid})")
}

/// What a strict program may do to its own process and thread objects
/// through a handle it opens (runtimes do): query them and wait on them
/// (`PROCESS_QUERY_LIMITED_INFORMATION | SYNCHRONIZE`), nothing more.
pub const SELF_QUERY: u32 = 0x0010_1000;

/// The descriptor of a program's process and primary thread objects: as
/// `supervisor_only_sddl`, and for a strict run (`run_sid`) `SELF_QUERY`
/// for its own AppContainer. No other run's SID is there: another run
/// cannot open them.
pub fn child_objects_sddl(user: &str, run_sid: Option<&str>) -> String {
    let mut s = supervisor_only_sddl(user);
    if let Some(run) = run_sid {
        s.push_str(&format!("(A;;0x{SELF_QUERY:x};;;{run})"));
    }
    s
}

/// Desktop rights a program needs to run its windows there: read and write
/// objects, create windows and menus, enumerate, read the descriptor (no
/// hooks, no journal, no switching the desktop shown).
pub const DESKTOP_USE: u32 = 0x0001 | 0x0002 | 0x0004 | 0x0040 | 0x0080 | 0x0002_0000;

/// The descriptor of the supervisor's own desktop (one per process), where
/// isolated programs run: as `supervisor_only_sddl`, plus `DESKTOP_USE` for
/// every AppContainer (strict) and for RESTRICTED (`RC`, among a restricted
/// token's restricting SIDs), and a low mandatory label (without them, a
/// low-integrity program could not start its user32 there).
pub fn worker_desktop_sddl(user: &str) -> String {
    format!(
        "{}(A;;0x{DESKTOP_USE:x};;;{ALL_APP_PACKAGES})(A;;0x{DESKTOP_USE:x};;;RC){}",
        supervisor_only_sddl(user),
        low_label_sddl(false)
    )
}

/// The name of the supervisor's desktop: one per process (a desktop per run
/// would exhaust the desktop heap at a judge's rates).
pub fn worker_desktop_name(pid: u32) -> String {
    format!("winsandbox-{pid}")
}

/// The SIDs the ACEs of a DACL in SDDL (`D:` part) allow, in order, and
/// whether it is protected: `None` if any ACE is not an allow ACE. For
/// reading back what a system stored (it may map the rights).
pub fn dacl_trustees(sddl: &str) -> Option<(bool, Vec<String>)> {
    let d = &sddl[sddl.find("D:")? + 2..];
    let d = &d[..d.find("S:").unwrap_or(d.len())];
    let protected = d[..d.find('(').unwrap_or(d.len())].contains('P');
    let mut sids = Vec::new();
    for ace in d.split('(').skip(1) {
        let fields: Vec<&str> = ace.trim_end_matches(')').split(';').collect();
        if fields.len() < 6 || fields[0] != "A" {
            return None;
        }
        sids.push(fields[5].to_string());
    }
    Some((protected, sids))
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

    #[test]
    fn supervisor_objects_allow_system_and_the_user_alone() {
        let user = "S-1-5-21-1-2-3-1000";
        assert_eq!(
            supervisor_only_sddl(user),
            "D:P(A;;GA;;;SY)(A;;GA;;;S-1-5-21-1-2-3-1000)"
        );
        assert_eq!(
            worker_desktop_sddl(user),
            "D:P(A;;GA;;;SY)(A;;GA;;;S-1-5-21-1-2-3-1000)(A;;0x200c7;;;AC)(A;;0x200c7;;;RC)\
             S:(ML;;NW;;;LW)"
        );
        assert_eq!(worker_desktop_name(42), "winsandbox-42");
        assert_eq!(child_objects_sddl(user, None), supervisor_only_sddl(user));
        assert_eq!(
            child_objects_sddl(user, Some("S-1-15-2-9")),
            "D:P(A;;GA;;;SY)(A;;GA;;;S-1-5-21-1-2-3-1000)(A;;0x101000;;;S-1-15-2-9)"
        );
        let run = appcontainer_sid(&appcontainer_name(42, 0));
        assert_eq!(
            fresh_workdir_sddl(user, &run, false),
            format!(
                "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;S-1-5-21-1-2-3-1000)(A;OICI;0x1301bf;;;{run})"
            )
        );
        // Restricted: low integrity writes only below a low label.
        let run = restricted_run_sid(&appcontainer_name(42, 0));
        assert_eq!(
            fresh_workdir_sddl(user, &run, true),
            format!(
                "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;S-1-5-21-1-2-3-1000)(A;OICI;0x1301bf;;;{run})\
                 S:(ML;OICI;NW;;;LW)"
            )
        );
        assert_eq!(low_label_sddl(false), "S:(ML;;NW;;;LW)");
        // No hook, journal or switch right for the programs.
        assert_eq!(DESKTOP_USE & (0x0008 | 0x0010 | 0x0020 | 0x0100), 0);
    }

    #[test]
    fn a_restricted_token_is_built_from_these_sids() {
        // The run's SID: the null authority, four words of the name's hash
        // (the AppContainer SID's first four; as Python's hashlib computes it), one per run.
        let name = appcontainer_name(42, 0);
        let run = restricted_run_sid(&name);
        assert_eq!(run, "S-1-0-687890850-4080735783-1583984133-1493314155");
        assert!(appcontainer_sid(&name).starts_with(&run.replace("S-1-0-", "S-1-15-2-")));
        assert_ne!(run, restricted_run_sid(&appcontainer_name(42, 1)));
        assert_eq!(
            restricting_sids(&run, Some("S-1-5-5-0-99")),
            [&run, "S-1-5-32-545", "S-1-1-0", "S-1-5-12", "S-1-5-5-0-99"]
        );
        assert_eq!(restricting_sids(&run, None).len(), 4);
        // Kept: Everyone, Users, INTERACTIVE, Authenticated Users, the logon
        // session, the integrity label. Deny-only: the rest.
        for kept in [
            "S-1-1-0",
            "S-1-5-32-545",
            "S-1-5-4",
            "S-1-5-11",
            "S-1-5-5-0-99",
            "S-1-16-8192",
        ] {
            assert!(group_kept(kept), "{kept}");
        }
        for denied in [
            "S-1-5-32-544", // Administrators
            "S-1-5-21-1-2-3-513",
            "S-1-2-0",
            "S-1-5-15",
            "S-1-5-113",
            "S-1-5-32-5450",
        ] {
            assert!(!group_kept(denied), "{denied}");
        }
        assert_eq!(
            restricted_default_dacl_sddl("S-1-5-21-1-2-3-1000", &run),
            format!("D:(A;;GA;;;SY)(A;;GA;;;S-1-5-21-1-2-3-1000)(A;;GA;;;{run})")
        );
        assert_eq!(LOW_INTEGRITY, "S-1-16-4096");
        assert_eq!(
            canary_granted_sddl("S-1-5-21-1-2-3-1000", "S-1-0-1-2-3-4"),
            "D:P(A;;GA;;;SY)(A;;GA;;;S-1-5-21-1-2-3-1000)(A;;FA;;;S-1-0-1-2-3-4)"
        );
    }

    #[test]
    fn dacls_read_back_name_their_trustees() {
        let user = "S-1-5-21-1-2-3-1000";
        assert_eq!(
            dacl_trustees(&worker_desktop_sddl(user)),
            Some((
                true,
                vec!["SY".into(), user.into(), "AC".into(), "RC".into()]
            ))
        );
        // As a system may store it: owner first, rights mapped, flags.
        assert_eq!(
            dacl_trustees("O:BAD:PAI(A;;0x1f01ff;;;SY)(A;;FA;;;BA)"),
            Some((true, vec!["SY".into(), "BA".into()]))
        );
        assert_eq!(
            dacl_trustees("D:(A;;GA;;;WD)"),
            Some((false, vec!["WD".into()]))
        );
        assert_eq!(dacl_trustees("D:P(D;;GA;;;WD)(A;;GA;;;SY)"), None);
        assert_eq!(dacl_trustees("O:SY"), None);
    }

    #[test]
    fn windows_grants_are_planned_before_anything_changes() {
        let system = [
            r"C:\Windows",
            r"C:\Program Files",
            r"C:\Program Files (x86)",
        ];
        let g = |path: &str, access, tree| WinGrant {
            path: path.into(),
            access,
            tree,
        };
        // A solution in a user folder, its cwd, an input folder to read.
        assert_eq!(
            windows_grants(
                Some(r"C:\judge\sub\a.exe"),
                Some(r"C:\judge\run1"),
                &[r"C:\judge\tests"],
                &[r"D:\out"],
                &system
            ),
            Ok(vec![
                g(r"C:\judge\run1", FILE_MODIFY, true),
                g(r"C:\judge\tests", FILE_READ_EXECUTE, true),
                g(r"D:\out", FILE_MODIFY, true),
                g(r"C:\judge\sub", FOLDER_TRAVERSE, false),
                g(r"C:\judge\sub\a.exe", FILE_READ_EXECUTE, false),
            ])
        );
        // A fresh cwd and a system program: nothing to grant; the system's
        // files are read already (any case, either separator).
        assert_eq!(
            windows_grants(
                Some(r"C:\Windows\System32\cmd.exe"),
                None,
                &[
                    "c:/windows/system32/drivers",
                    r"C:\PROGRAM FILES\Python\lib"
                ],
                &[],
                &system
            ),
            Ok(vec![])
        );
        // Shares and verbatim paths: the share is the root.
        assert_eq!(win_components(r"\\srv\judge\in"), [r"\\srv\judge", "in"]);
        assert_eq!(
            win_components(r"\\?\UNC\srv\judge\in"),
            [r"\\srv\judge", "in"]
        );
        assert_eq!(win_components(r"\\?\C:\Windows\x"), ["c:", "windows", "x"]);
        assert_eq!(
            windows_grants(None, None, &[r"\\?\c:\windows\system32"], &[], &system),
            Ok(vec![])
        );
        // A folder whose name only starts like a system folder's is not one.
        assert_eq!(
            windows_grants(None, None, &[r"C:\WindowsData\in"], &[], &system),
            Ok(vec![g(r"C:\WindowsData\in", FILE_READ_EXECUTE, true)])
        );
        // Refused, naming the argument: writing the system's files, a drive,
        // a folder holding the system's.
        let refused = |cwd: Option<&str>, r: &[&str], w: &[&str]| {
            windows_grants(None, cwd, r, w, &system).unwrap_err().0
        };
        assert_eq!(refused(None, &[], &[r"C:\Windows\Temp"]), "writable");
        assert_eq!(refused(Some(r"C:\Program Files\x"), &[], &[]), "cwd");
        assert_eq!(refused(None, &[r"C:\"], &[]), "readable");
        assert_eq!(refused(None, &["D:"], &[]), "readable");
        assert_eq!(refused(Some(r"C:\"), &[], &[]), "cwd");
        assert_eq!(refused(None, &[r"\\srv\judge"], &[]), "readable");
        assert_eq!(refused(None, &[], &[r"\\?\C:\Windows"]), "writable");
        let e = windows_grants(None, None, &[], &[r"C:\"], &system)
            .unwrap_err()
            .1;
        assert!(e.contains("never granted"), "{e}");
    }
}
