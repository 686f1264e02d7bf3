//! Znode path rules, as ZooKeeper's `PathUtils.validatePath` has them.

/// Why a path is refused; the server answers `BadArguments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPath(pub &'static str);

/// ZooKeeper's refused characters. Java strings are UTF-16, so every character outside
/// the Basic Multilingual Plane arrives there as surrogates (0xd800..) and is refused too.
fn bad_char(c: char) -> bool {
    let c = c as u32;
    c <= 0x1f || (0x7f..=0x9f).contains(&c) || (0xd800..=0xf8ff).contains(&c) || c >= 0xfff0
}

/// Checks an absolute znode path: starts with `/`, no empty, `.` or `..` component, no
/// trailing `/` (except the root itself), no control or reserved characters.
pub fn validate(path: &str) -> Result<(), InvalidPath> {
    if path.is_empty() {
        return Err(InvalidPath("path length must be > 0"));
    }
    if !path.starts_with('/') {
        return Err(InvalidPath("path must start with / character"));
    }
    if path.len() == 1 {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(InvalidPath("path must not end with / character"));
    }
    path[1..].split('/').try_for_each(validate_name)
}

/// The longest node name the tree holds (1 GiB less a byte). ZooKeeper has no limit of
/// its own; a frame (`jute.maxbuffer`) may be configured up to 2 GiB.
pub const MAX_NAME_BYTES: usize = (1 << 30) - 1;

/// Checks one component of a path: not empty, not `.` or `..`, no `/`, no control or
/// reserved characters, at most [`MAX_NAME_BYTES`].
pub fn validate_name(name: &str) -> Result<(), InvalidPath> {
    match name {
        "" => return Err(InvalidPath("empty node name specified")),
        "." | ".." => return Err(InvalidPath("relative paths not allowed")),
        _ if name.len() > MAX_NAME_BYTES => return Err(InvalidPath("node name too long")),
        _ => {}
    }
    if name.chars().any(|c| c == '/' || bad_char(c)) {
        return Err(InvalidPath("invalid character"));
    }
    Ok(())
}

/// The parent of an absolute path (`/a/b` → `/a`, `/a` → `/`), `None` for the root.
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    let i = path.rfind('/')?;
    Some(if i == 0 { "/" } else { &path[..i] })
}

/// The last component of a path (`/a/b` → `b`).
pub fn name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Joins a parent path and a child name.
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// Every strict ancestor of `path`, nearest first, ending with `/`.
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut cur = parent(path);
    std::iter::from_fn(move || {
        let p = cur?;
        cur = parent(p);
        Some(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid() {
        for ok in ["/", "/a", "/a/b", "/a.b", "/...", "/a/.b", "/zoo keeper", "/é", "/\u{a0}", "/\u{f900}"] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "/a/", "//", "/a//b", "/.", "/..", "/a/./b", "/a/..", "/a\0b", "/a\u{1}", "/\u{fff0}", "/a\u{7f}", "/\u{1f600}"] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parents_and_names() {
        assert_eq!(parent("/"), None);
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/a/b/c"), Some("/a/b"));
        assert_eq!(name("/a/b"), "b");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(ancestors("/a/b/c").collect::<Vec<_>>(), vec!["/a/b", "/a", "/"]);
        assert_eq!(ancestors("/").count(), 0);
    }
}
