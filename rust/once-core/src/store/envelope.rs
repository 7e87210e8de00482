//! How an entry travels: one header line, then the entry's JSON. With a signing key the header
//! carries a keyed BLAKE3 tag over the action key and the body, so an entry written by someone
//! without the key (a pull-request build, a poisoned server) is recognised and ignored on read
//! (Nx CVE-2025-36852; Turborepo's signing, off by default, is on here whenever a key is set).
//! The local store's entry files are the same envelope, always tagged, with a key of their own
//! (`Signer::local_store`).
//!
//! ```text
//! once-entry 1 <64 hex digits of the tag, or "-" when unsigned>\n
//! {"key":"...","outputs":[...],...}
//! ```

const MAGIC: &str = "once-entry 1 ";
const UNSIGNED: &str = "-";
/// The BLAKE3 `derive_key` context: a signing key used elsewhere yields unrelated tags here.
const CONTEXT: &str = "once remote cache 2026-01 entry signature v1";
/// The local store's: its entry files are this same envelope, tagged with a key of their own.
const LOCAL_CONTEXT: &str = "once local store 2026-12 entry checksum v1";

/// Signs and checks entries with a key derived from the user's secret.
pub struct Signer {
    key: [u8; 32],
}

impl Signer {
    #[must_use]
    pub fn new(secret: &str) -> Signer {
        Signer {
            key: blake3::derive_key(CONTEXT, secret.as_bytes()),
        }
    }

    /// The local store's tag. It has no secret (whoever can write the store can recompute it):
    /// it binds an entry file to its key and its body, so one copied under another key, edited
    /// or torn is recognised as such and read as a miss.
    #[must_use]
    pub fn local_store() -> Signer {
        Signer {
            key: blake3::derive_key(LOCAL_CONTEXT, b""),
        }
    }

    /// Over the key's length, the key and the body: no two (key, body) pairs share an input.
    fn tag(&self, key: &str, body: &[u8]) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(&(key.len() as u64).to_le_bytes());
        hasher.update(key.as_bytes());
        hasher.update(body);
        hasher.finalize()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Unsigned,
    BadSignature,
    Malformed(String),
}

/// The bytes to store on the server for the entry `body` of `key`.
#[must_use]
pub fn seal(key: &str, body: &[u8], signer: Option<&Signer>) -> Vec<u8> {
    let tag = signer.map_or_else(
        || UNSIGNED.to_owned(),
        |s| s.tag(key, body).to_hex().to_string(),
    );
    let mut wire = Vec::with_capacity(MAGIC.len() + tag.len() + 1 + body.len());
    wire.extend_from_slice(MAGIC.as_bytes());
    wire.extend_from_slice(tag.as_bytes());
    wire.push(b'\n');
    wire.extend_from_slice(body);
    wire
}

/// The body of a stored entry, if it may be used: without a signer anything well-formed is
/// accepted; with one, only a body whose tag it recomputes (compared in constant time).
pub fn open<'a>(wire: &'a [u8], key: &str, signer: Option<&Signer>) -> Result<&'a [u8], Refused> {
    let malformed =
        || Refused::Malformed("not a once entry (no \"once-entry 1\" header)".to_owned());
    let newline = wire
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(malformed)?;
    let header = std::str::from_utf8(&wire[..newline]).map_err(|_| malformed())?;
    let tag = header.strip_prefix(MAGIC).ok_or_else(malformed)?;
    let body = &wire[newline + 1..];
    let Some(signer) = signer else {
        return Ok(body);
    };
    if tag == UNSIGNED {
        return Err(Refused::Unsigned);
    }
    let Ok(claimed) = blake3::Hash::from_hex(tag) else {
        return Err(Refused::BadSignature);
    };
    // `blake3::Hash`'s equality is constant-time.
    if signer.tag(key, body) == claimed {
        Ok(body)
    } else {
        Err(Refused::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_round_trip_and_refusals() {
        let good = Signer::new("team secret");
        let other = Signer::new("someone else");
        let wire = seal("k1", b"{}", Some(&good));
        assert_eq!(open(&wire, "k1", Some(&good)), Ok(&b"{}"[..]));
        assert_eq!(open(&wire, "k1", None), Ok(&b"{}"[..]));
        assert_eq!(open(&wire, "k1", Some(&other)), Err(Refused::BadSignature));
        // The tag binds the key: the same body filed under another key is refused.
        assert_eq!(open(&wire, "k2", Some(&good)), Err(Refused::BadSignature));
        let mut tampered = wire.clone();
        *tampered.last_mut().unwrap() = b' ';
        assert_eq!(
            open(&tampered, "k1", Some(&good)),
            Err(Refused::BadSignature)
        );
        let unsigned = seal("k1", b"{}", None);
        assert_eq!(open(&unsigned, "k1", Some(&good)), Err(Refused::Unsigned));
        assert!(matches!(
            open(b"{}", "k1", None),
            Err(Refused::Malformed(_))
        ));
    }
}
