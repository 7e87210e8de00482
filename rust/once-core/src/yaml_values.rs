//! YAML read as `PyYAML`'s base loader reads it: every scalar a string (no guessing of numbers,
//! booleans and dates, which a lockfile never means), tags ignored, the last of equal keys
//! winning. What it cannot give as plain values (an alias, a key that is not a scalar, nesting
//! deep enough to be an attack) is not read at all: lockfiles never hold them, and a caller
//! that cannot read a lockfile takes it whole.

use std::collections::BTreeMap;

use std::io::{self, Read};

use saphyr_parser::{BufferedInput, Event, Input, Parser, StrInput};

use crate::hash::Digest;
use serde::Serialize;

/// Deeper nesting than any lockfile has: a document built to overflow the stack is not read.
const MAX_DEPTH: usize = 256;

/// A YAML value. Serialized as JSON (keys sorted), it is the canonical form of what it holds,
/// whatever the layout, quoting and order of the text.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Text(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

/// The one document of a YAML stream; `None` when it holds no document or more than one (as
/// `PyYAML`'s `load` refuses them), or anything the module's doc says it does not read.
#[must_use]
pub fn load(data: &[u8]) -> Option<Value> {
    let mut events = Events::new(data)?;
    let first = events.next()?;
    let value = events.value(first, 0)?;
    events.end()?;
    Some(value)
}

/// What comes next in a mapping.
pub(crate) enum Key {
    Next(String),
    End,
}

/// The events of a stream of one document, for readers that reduce its parts as they come.
pub(crate) struct Events<'a, T: Input>(Parser<'a, T>);

impl<'a> Events<'a, StrInput<'a>> {
    /// At the start of the document's content; `None` for bytes that are not UTF-8 or a stream
    /// without a document.
    pub(crate) fn new(data: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(data).ok()?;
        Events(Parser::new_from_str(text)).started()
    }
}

impl<'a, I: Iterator<Item = char> + 'a> Events<'a, BufferedInput<I>> {
    /// As `new`, from a stream of chars (`HashedChars`): the text is never whole in memory.
    pub(crate) fn from_chars(chars: I) -> Option<Self> {
        Events(Parser::new_from_iter(chars)).started()
    }
}

impl<'a, T: Input> Events<'a, T> {
    fn started(mut self) -> Option<Self> {
        let started = matches!(self.next()?, Event::StreamStart)
            && matches!(self.next()?, Event::DocumentStart(_));
        started.then_some(self)
    }

    pub(crate) fn next(&mut self) -> Option<Event<'a>> {
        match self.0.next_event()? {
            // An alias shares a node PyYAML would copy in: not worth keeping anchored nodes for.
            Ok((Event::Alias(_), _)) | Err(_) => None,
            Ok((event, _)) => Some(event),
        }
    }

    /// After the document's content: `Some` when the stream ends with it.
    pub(crate) fn end(&mut self) -> Option<()> {
        let ended =
            matches!(self.next()?, Event::DocumentEnd) && matches!(self.next()?, Event::StreamEnd);
        ended.then_some(())
    }

    /// The value that starts with event `first`, `depth` levels down.
    pub(crate) fn value(&mut self, first: Event<'a>, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        match first {
            Event::Scalar(text, ..) => Some(Value::Text(text.into_owned())),
            Event::SequenceStart(..) => {
                let mut items = Vec::new();
                loop {
                    match self.next()? {
                        Event::SequenceEnd => return Some(Value::List(items)),
                        event => items.push(self.value(event, depth + 1)?),
                    }
                }
            }
            Event::MappingStart(..) => {
                let mut map = BTreeMap::new();
                while let Key::Next(key) = self.key()? {
                    let event = self.next()?;
                    map.insert(key, self.value(event, depth + 1)?);
                }
                Some(Value::Map(map))
            }
            _ => None,
        }
    }

    /// The next key of a mapping, or its end; `None` for a key that is not a scalar (`PyYAML`
    /// cannot key a dict by a list either).
    pub(crate) fn key(&mut self) -> Option<Key> {
        match self.next()? {
            Event::MappingEnd => Some(Key::End),
            Event::Scalar(key, ..) => Some(Key::Next(key.into_owned())),
            _ => None,
        }
    }
}

/// The chars of a file's UTF-8 text, read a buffer at a time, its bytes hashed on the way: the
/// events of a lockfile of many MB from a few KB of memory, and the digest of what was read.
/// The chars stop at the first byte that is not UTF-8, or at a read error (`finish` tells).
pub(crate) struct HashedChars<R: Read> {
    reader: R,
    hasher: blake3::Hasher,
    /// Read, not yet decoded: the first bytes of a char that the last read cut.
    undecoded: Vec<u8>,
    decoded: String,
    given: usize,
    stopped: bool,
    not_utf8: bool,
    error: Option<io::Error>,
}

const READ_SIZE: usize = 64 << 10;

impl<R: Read> HashedChars<R> {
    pub(crate) fn new(reader: R) -> Self {
        HashedChars {
            reader,
            hasher: blake3::Hasher::new(),
            undecoded: Vec::with_capacity(READ_SIZE),
            decoded: String::new(),
            given: 0,
            stopped: false,
            not_utf8: false,
            error: None,
        }
    }

    /// The digest of the whole file (the rest read now), and whether all of it is UTF-8.
    pub(crate) fn finish(mut self) -> io::Result<(Digest, bool)> {
        if let Some(error) = self.error {
            return Err(error);
        }
        io::copy(&mut self.reader, &mut self.hasher)?;
        let utf8 = !self.not_utf8 && self.undecoded.is_empty();
        Ok((Digest(*self.hasher.finalize().as_bytes()), utf8))
    }

    fn refill(&mut self) {
        let start = self.undecoded.len();
        self.undecoded.resize(start + READ_SIZE, 0);
        let read = loop {
            match self.reader.read(&mut self.undecoded[start..]) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    self.error = Some(error);
                    break 0;
                }
                Ok(read) => break read,
            }
        };
        self.undecoded.truncate(start + read);
        self.hasher.update(&self.undecoded[start..]);
        let valid = match std::str::from_utf8(&self.undecoded) {
            Ok(text) => text.len(),
            Err(error) => {
                self.not_utf8 = error.error_len().is_some();
                error.valid_up_to()
            }
        };
        self.decoded.clear();
        self.decoded
            .push_str(std::str::from_utf8(&self.undecoded[..valid]).unwrap_or_default());
        self.undecoded.drain(..valid);
        self.given = 0;
        self.stopped = read == 0 || self.not_utf8;
    }
}

impl<R: Read> Iterator for HashedChars<R> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        loop {
            if let Some(char) = self.decoded[self.given..].chars().next() {
                self.given += char.len_utf8();
                return Some(char);
            }
            if self.stopped {
                return None;
            }
            self.refill();
        }
    }
}
