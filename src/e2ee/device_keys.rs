//! Device keys and one-time/fallback keys as `/keys/upload` receives them.

use serde_json::{Map, Value};

/// A key id is `<algorithm>:<key id>` (`signed_curve25519:AAAAHg`); `None` if it is not.
pub fn split_key_id(key_id: &str) -> Option<(&str, &str)> {
    key_id
        .split_once(':')
        .filter(|(algorithm, id)| !algorithm.is_empty() && !id.is_empty())
}

/// Why uploaded device keys were refused: a wrong shape, or keys of another device.
#[derive(Debug, PartialEq)]
pub enum DeviceKeysError {
    Shape(String),
    NotYours(String),
}

/// Checks an uploaded `DeviceKeys` object: it must describe the uploading device, list its
/// algorithms and keys, and carry signatures. Another device's keys uploaded with this device's
/// token would let one device impersonate another.
pub fn check_device_keys(
    keys: &Value,
    user_id: &str,
    device_id: &str,
) -> Result<(), DeviceKeysError> {
    check_shape(keys).map_err(DeviceKeysError::Shape)?;
    if keys.get("user_id").and_then(Value::as_str) != Some(user_id) {
        return Err(DeviceKeysError::NotYours(
            "device_keys.user_id does not match the requester".into(),
        ));
    }
    if keys.get("device_id").and_then(Value::as_str) != Some(device_id) {
        return Err(DeviceKeysError::NotYours(
            "device_keys.device_id does not match the requester's device".into(),
        ));
    }
    Ok(())
}

fn check_shape(keys: &Value) -> Result<(), String> {
    let object = keys.as_object().ok_or("device_keys must be an object")?;
    if !object.get("user_id").is_some_and(Value::is_string)
        || !object.get("device_id").is_some_and(Value::is_string)
    {
        return Err("device_keys needs user_id and device_id".into());
    }
    if !object.get("algorithms").is_some_and(Value::is_array) {
        return Err("device_keys.algorithms must be an array".into());
    }
    let key_map = object
        .get("keys")
        .and_then(Value::as_object)
        .ok_or("device_keys.keys must be an object")?;
    if key_map
        .iter()
        .any(|(id, key)| split_key_id(id).is_none() || !key.is_string())
    {
        return Err("device_keys.keys must map <algorithm>:<device id> to a key".into());
    }
    if !object.get("signatures").is_some_and(Value::is_object) {
        return Err("device_keys.signatures must be an object".into());
    }
    Ok(())
}

/// One one-time or fallback key, ready to store.
#[derive(Debug, PartialEq)]
pub struct UploadedKey {
    pub algorithm: String,
    pub key_id: String,
    /// The key as uploaded: a string (unsigned curve25519) or a signed key object.
    pub key: Value,
}

/// The keys of a `one_time_keys` or `fallback_keys` map; a malformed id is the client's error.
pub fn uploaded_keys(map: &Map<String, Value>) -> Result<Vec<UploadedKey>, String> {
    map.iter()
        .map(|(id, key)| {
            let (algorithm, key_id) =
                split_key_id(id).ok_or_else(|| format!("{id} is not <algorithm>:<key id>"))?;
            if !(key.is_string() || key.is_object()) {
                return Err(format!("{id} must be a key string or a signed key object"));
            }
            Ok(UploadedKey {
                algorithm: algorithm.to_owned(),
                key_id: key_id.to_owned(),
                key: key.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys() -> Value {
        json!({
            "user_id": "@a:x", "device_id": "DEV",
            "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
            "keys": {"curve25519:DEV": "abc", "ed25519:DEV": "def"},
            "signatures": {"@a:x": {"ed25519:DEV": "sig"}}
        })
    }

    #[test]
    fn device_keys_must_be_the_requesters_own() {
        assert!(check_device_keys(&keys(), "@a:x", "DEV").is_ok());
        assert!(check_device_keys(&keys(), "@b:x", "DEV").is_err());
        assert!(check_device_keys(&keys(), "@a:x", "OTHER").is_err());
        let mut bad = keys();
        bad["keys"] = json!({"nocolon": "x"});
        assert!(check_device_keys(&bad, "@a:x", "DEV").is_err());
    }

    #[test]
    fn one_time_key_ids_split_into_algorithm_and_id() {
        let map = json!({"signed_curve25519:AAAA": {"key": "k"}, "curve25519:B": "k2"});
        let keys = uploaded_keys(map.as_object().unwrap()).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys
            .iter()
            .any(|k| k.algorithm == "signed_curve25519" && k.key_id == "AAAA"));
        let bad = json!({"AAAA": "k"});
        assert!(uploaded_keys(bad.as_object().unwrap()).is_err());
        let bad = json!({"a:b": 3});
        assert!(uploaded_keys(bad.as_object().unwrap()).is_err());
    }
}
