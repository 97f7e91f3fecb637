//! Azure IoT Hub's MQTT conventions: the connection string, SAS tokens, and the URL-encoded
//! property bags in topic names.

use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The API version in the MQTT username.
pub const API_VERSION: &str = "2021-04-12";

/// Characters left as they are in URL-encoded values (RFC 3986 unreserved).
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A device's identity from its connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// `{hub}.azure-devices.net`.
    pub host: String,
    /// The device id (also the MQTT client id).
    pub device_id: String,
    /// The device's symmetric key (decoded).
    key: Vec<u8>,
}

impl Device {
    /// Parses `HostName=…;DeviceId=…;SharedAccessKey=…` (other fields are ignored).
    pub fn parse(connection_string: &str) -> anyhow::Result<Self> {
        let mut host = None;
        let mut device_id = None;
        let mut key = None;
        for part in connection_string
            .split(';')
            .filter(|p| !p.trim().is_empty())
        {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("connection string: `{part}` is not `Name=value`")
            })?;
            match k.trim() {
                "HostName" => host = Some(v.trim().to_owned()),
                "DeviceId" => device_id = Some(v.trim().to_owned()),
                "SharedAccessKey" => key = Some(v.trim().to_owned()),
                _ => {}
            }
        }
        let missing = |what: &str| anyhow::anyhow!("connection string: no `{what}=`");
        let key = key.ok_or_else(|| missing("SharedAccessKey"))?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(key.as_bytes())
            .map_err(|e| {
                anyhow::anyhow!("connection string: SharedAccessKey is not base64: {e}")
            })?;
        Ok(Self {
            host: host.ok_or_else(|| missing("HostName"))?,
            device_id: device_id.ok_or_else(|| missing("DeviceId"))?,
            key,
        })
    }

    /// The MQTT username IoT Hub expects.
    pub fn username(&self) -> String {
        format!(
            "{}/{}/?api-version={API_VERSION}",
            self.host, self.device_id
        )
    }

    /// A SAS token for this device that expires at `expiry` (seconds since the Unix epoch).
    pub fn sas_token(&self, expiry: u64) -> String {
        let resource = encode(&format!("{}/devices/{}", self.host, self.device_id));
        let to_sign = format!("{resource}\n{expiry}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.key);
        let sig = ring::hmac::sign(&key, to_sign.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(sig.as_ref());
        format!(
            "SharedAccessSignature sr={resource}&sig={}&se={expiry}",
            encode(&sig)
        )
    }
}

/// URL-encodes one value.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, VALUE).to_string()
}

/// `k1=v1&k2=v2`, each part URL-encoded.
pub fn property_bag<'a>(props: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    props
        .into_iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Reads a property bag (the tail of a topic, with or without a leading `?`).
pub fn parse_bag(bag: &str) -> Vec<(String, String)> {
    bag.trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let d = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            (d(k), d(v))
        })
        .collect()
}

/// `$rid` (or any key) in a bag.
pub fn bag_value(bag: &str, key: &str) -> Option<String> {
    parse_bag(bag)
        .into_iter()
        .find_map(|(k, v)| (k == key).then_some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_string_and_sas_token() {
        let d = Device::parse(
            "HostName=myhub.azure-devices.net;DeviceId=gw-1;SharedAccessKey=c2VjcmV0LWtleQ==",
        )
        .unwrap();
        assert_eq!(
            d.username(),
            "myhub.azure-devices.net/gw-1/?api-version=2021-04-12"
        );
        let token = d.sas_token(1_700_000_000);
        // HMAC-SHA256("secret-key", "myhub.azure-devices.net%2Fdevices%2Fgw-1\n1700000000"),
        // base64, URL-encoded (computed independently with openssl).
        assert_eq!(
            token,
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fgw-1\
             &sig=ei7gbvS8q9RVUsufwkHjfAEhYxA8PRBTwAC9zQ4NtK8%3D&se=1700000000"
        );
        let e = Device::parse("HostName=h;DeviceId=d").unwrap_err();
        assert!(e.to_string().contains("SharedAccessKey"), "{e}");
    }

    #[test]
    fn property_bags_round_trip() {
        let bag = property_bag([("$.ct", "application/json"), ("service", "a b&c")]);
        assert_eq!(bag, "%24.ct=application%2Fjson&service=a%20b%26c");
        assert_eq!(
            parse_bag(&bag),
            vec![
                ("$.ct".to_string(), "application/json".to_string()),
                ("service".to_string(), "a b&c".to_string())
            ]
        );
        assert_eq!(bag_value("?$rid=7&x=1", "$rid").as_deref(), Some("7"));
    }
}
