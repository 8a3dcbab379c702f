//! Strict JSON for the parts a server checks before a kernel reads them: a parse that refuses
//! what two JSON readers may read differently. A key that appears twice in one object, at any
//! depth, is refused (readers differ: some fail, some keep the first, Python's `json` the last); so is
//! anything that is not standard JSON. A server forwards what parsed re-serialised, so the kernel
//! gets exactly the values that were checked.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a part does not parse strictly.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StrictJsonError {
    #[error("it is not valid JSON: {0}")]
    Invalid(String),
    #[error("the key \"{0}\" appears more than once in one object")]
    DuplicateKey(String),
}

/// Parses `bytes` as one JSON value, refusing duplicate keys at any depth.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let duplicate = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict {
        duplicate: &duplicate,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match (parsed, duplicate.into_inner()) {
        (Ok(value), _) => Ok(value),
        (Err(_), Some(key)) => Err(StrictJsonError::DuplicateKey(key)),
        (Err(e), None) => Err(StrictJsonError::Invalid(e.to_string())),
    }
}

/// A JSON value whose objects must not repeat a key; the first repeated key is kept in
/// `duplicate` so the error can name it.
#[derive(Clone, Copy)]
struct Strict<'a> {
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let error = format!("duplicate key `{key}`");
                *self.duplicate.borrow_mut() = Some(key);
                return Err(serde::de::Error::custom(error));
            }
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_json_parses_and_round_trips() {
        let value = parse_strict(
            br#"{"code": "print(1)", "n": [1, -2, 3.5, null, true], "o": {"a": "\u00e9"}}"#,
        )
        .unwrap();
        assert_eq!(value["code"], "print(1)");
        assert_eq!(
            parse_strict(&serde_json::to_vec(&value).unwrap()).unwrap(),
            value
        );
    }

    #[test]
    fn a_key_twice_is_refused_at_any_depth() {
        for (text, key) in [
            (r#"{"code": "a", "code": "b"}"#, "code"),
            (r#"{"user_expressions": {"x": "1", "x": "2"}}"#, "x"),
            (r#"[{"a": 1}, {"b": {"c": 1, "c": 2}}]"#, "c"),
            // The same key written with an escape is the same key.
            (r#"{"code": "a", "\u0063ode": "b"}"#, "code"),
        ] {
            assert_eq!(
                parse_strict(text.as_bytes()),
                Err(StrictJsonError::DuplicateKey(key.into())),
                "{text}"
            );
        }
    }

    #[test]
    fn what_is_not_standard_json_is_refused() {
        for text in [
            &b"{\"code\": \"a\""[..],
            b"{\"code\": NaN}",
            b"{\"code\": \"a\"} trailing",
            b"{\"code\": \"\\ud800\"}",
            b"{\"code\": \"\xff\"}",
            b"\xef\xbb\xbf{}",
            b"",
        ] {
            assert!(
                matches!(parse_strict(text), Err(StrictJsonError::Invalid(_))),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }
}
