//! Windows command lines and environment blocks, built as UTF-16 by pure
//! functions (tested on every platform).

/// Appends `arg` to a command line so that `CommandLineToArgvW` and the C
/// runtime read it back unchanged: quoted when empty or when it holds a space,
/// tab, newline or quote; backslashes doubled only before a quote.
pub fn append_arg(cmd: &mut Vec<u16>, arg: &[u16]) {
    const BS: u16 = b'\\' as u16;
    const QUOTE: u16 = b'"' as u16;
    let needs_quotes = arg.is_empty()
        || arg.iter().any(|&c| {
            c == b' ' as u16 || c == b'\t' as u16 || c == b'\n' as u16 || c == 0x0B || c == QUOTE
        });
    if !needs_quotes {
        cmd.extend_from_slice(arg);
        return;
    }
    cmd.push(QUOTE);
    let mut backslashes = 0usize;
    for &c in arg {
        if c == BS {
            backslashes += 1;
        } else {
            if c == QUOTE {
                // 2n+1 backslashes then the quote: n literal backslashes and a literal quote.
                cmd.extend(std::iter::repeat_n(BS, backslashes + 1));
            }
            backslashes = 0;
        }
        cmd.push(c);
    }
    // Trailing backslashes are doubled so the closing quote stays a quote.
    cmd.extend(std::iter::repeat_n(BS, backslashes));
    cmd.push(QUOTE);
}

/// The full command line: `argv0` (the program as the caller named it) and
/// the arguments. `argv0` follows the program-name rule (no escapes), so it is
/// quoted whole and must not hold a quote itself.
pub fn command_line(argv0: &[u16], args: &[Vec<u16>]) -> Result<Vec<u16>, &'static str> {
    if argv0.contains(&(b'"' as u16)) {
        return Err("the program name contains a double quote");
    }
    let mut cmd = Vec::new();
    let quote0 = argv0.is_empty() || argv0.iter().any(|&c| c == b' ' as u16 || c == b'\t' as u16);
    if quote0 {
        cmd.push(b'"' as u16);
    }
    cmd.extend_from_slice(argv0);
    if quote0 {
        cmd.push(b'"' as u16);
    }
    for a in args {
        cmd.push(b' ' as u16);
        append_arg(&mut cmd, a);
    }
    Ok(cmd)
}

/// What the child's environment is built from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvSpec {
    /// Start from the supervisor's environment (otherwise from nothing).
    pub inherit: bool,
    /// Set (`Some`) or remove (`None`) these variables, in order.
    pub changes: Vec<(String, Option<String>)>,
}

impl EnvSpec {
    pub fn inherit() -> Self {
        EnvSpec {
            inherit: true,
            changes: Vec::new(),
        }
    }
}

/// A `CREATE_UNICODE_ENVIRONMENT` block: `NAME=value\0` ... `\0`, sorted by
/// upper-cased name as Windows expects, names compared case-insensitively.
pub fn env_block(
    base: impl IntoIterator<Item = (String, String)>,
    spec: &EnvSpec,
) -> Result<Vec<u16>, String> {
    let mut vars: std::collections::BTreeMap<String, (String, String)> = Default::default();
    if spec.inherit {
        for (k, v) in base {
            vars.insert(k.to_uppercase(), (k, v));
        }
    }
    for (k, v) in &spec.changes {
        if k.is_empty() || k[1..].contains('=') || k.contains('\0') {
            return Err(format!("environment variable name {k:?} is not valid"));
        }
        match v {
            Some(v) if v.contains('\0') => {
                return Err(format!("environment variable {k} holds a NUL character"))
            }
            Some(v) => {
                vars.insert(k.to_uppercase(), (k.clone(), v.clone()));
            }
            None => {
                vars.remove(&k.to_uppercase());
            }
        }
    }
    let mut block = Vec::new();
    for (k, v) in vars.values() {
        block.extend(k.encode_utf16());
        block.push(b'=' as u16);
        block.extend(v.encode_utf16());
        block.push(0);
    }
    if block.is_empty() {
        block.push(0);
    }
    block.push(0);
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    fn quoted(arg: &str) -> String {
        let mut c = Vec::new();
        append_arg(&mut c, &w(arg));
        String::from_utf16(&c).unwrap()
    }

    #[test]
    fn quoting_rules() {
        assert_eq!(quoted("plain"), "plain");
        assert_eq!(quoted(""), "\"\"");
        assert_eq!(quoted("a b"), "\"a b\"");
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
        assert_eq!(quoted("a\\b"), "a\\b");
        assert_eq!(quoted("a b\\"), "\"a b\\\\\"");
        assert_eq!(quoted("a\\\"b"), "\"a\\\\\\\"b\"");
        assert_eq!(quoted("tab\there"), "\"tab\there\"");
        assert_eq!(quoted("ünï cödé"), "\"ünï cödé\"");
        assert_eq!(quoted("C:\\dir\\"), "C:\\dir\\");
    }

    #[test]
    fn command_lines() {
        let c = command_line(&w("C:\\Program Files\\x.exe"), &[w("a"), w("")]).unwrap();
        assert_eq!(
            String::from_utf16(&c).unwrap(),
            "\"C:\\Program Files\\x.exe\" a \"\""
        );
        assert!(command_line(&w("a\"b"), &[]).is_err());
    }

    #[test]
    fn env_blocks() {
        let base = vec![
            ("Path".to_string(), "C:\\x".to_string()),
            ("B".into(), "1".into()),
        ];
        let spec = EnvSpec {
            inherit: true,
            changes: vec![
                ("PATH".into(), Some("C:\\y".into())),
                ("B".into(), None),
                ("a".into(), Some("2".into())),
            ],
        };
        let b = env_block(base.clone(), &spec).unwrap();
        assert_eq!(String::from_utf16(&b).unwrap(), "a=2\0PATH=C:\\y\0\0");
        let empty = env_block(base.clone(), &EnvSpec::default()).unwrap();
        assert_eq!(empty, vec![0, 0]);
        let bad = EnvSpec {
            inherit: false,
            changes: vec![("A=B".into(), Some("x".into()))],
        };
        assert!(env_block(base.clone(), &bad).unwrap_err().contains("A=B"));
        // "=C:" style names (per-drive cwd) are legal: '=' only as first char.
        let drive = EnvSpec {
            inherit: false,
            changes: vec![("=C:".into(), Some("C:\\".into()))],
        };
        assert!(env_block(base, &drive).is_ok());
    }
}
