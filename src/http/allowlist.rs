//! IMAP servers a caller may choose at login (`"server"` in the body): only those the operator
//! lists in `IMAP_BRIDGE_ALLOWED_SERVERS`, so the bridge cannot be turned into a port scanner
//! or a client of internal services (SSRF).
//!
//! A choice is admitted when its host, spelled as listed (letter case and one trailing dot
//! aside), and its port match an entry, and when every address the name resolves to is one a
//! mail server can have (not unspecified, multicast, broadcast or link-local, which is where
//! cloud metadata services live). Every other spelling of the same machine — an IP literal,
//! decimal or hex IPv4, IPv6 loopback, another port — is refused, with one and the same 403
//! body that echoes nothing, before any connection is made.

use std::net::IpAddr;

use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiError;
use crate::config::Security;
use crate::imap::Upstream;

/// The operator's list.
#[derive(Debug, Clone, Default)]
pub struct AllowedServers {
    entries: Vec<(String, u16)>,
}

/// A server chosen by the caller at login.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"host": "imap.example.com", "port": 993, "security": "tls"}))]
pub struct ServerChoice {
    /// Host name exactly as the operator allow-listed it.
    #[schema(min_length = 1, max_length = 253)]
    pub host: String,
    /// TCP port.
    #[schema(minimum = 1, maximum = 65535)]
    #[serde(deserialize_with = "super::schema::whole")]
    pub port: u16,
    /// `tls` (implicit), `starttls` or `plain` (loopback only unless the operator allows it).
    #[schema(value_type = String, pattern = "^(tls|starttls|plain)$")]
    pub security: Security,
}

impl AllowedServers {
    /// Parses `host:port` entries (`[v6]:port` for an IPv6 literal).
    pub fn parse(entries: &[String]) -> anyhow::Result<Self> {
        let mut parsed = Vec::new();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let (host, port) = entry.rsplit_once(':').ok_or_else(|| {
                anyhow::anyhow!("IMAP_BRIDGE_ALLOWED_SERVERS: {entry:?} is not host:port")
            })?;
            let port: u16 = port.parse().ok().filter(|&p| p != 0).ok_or_else(|| {
                anyhow::anyhow!("IMAP_BRIDGE_ALLOWED_SERVERS: bad port in {entry:?}")
            })?;
            let host = normalize(host.trim_start_matches('[').trim_end_matches(']'));
            anyhow::ensure!(
                !host.is_empty(),
                "IMAP_BRIDGE_ALLOWED_SERVERS: empty host in {entry:?}"
            );
            parsed.push((host, port));
        }
        Ok(AllowedServers { entries: parsed })
    }

    /// Whether `host:port` is listed, spelled as listed.
    pub fn permits(&self, host: &str, port: u16) -> bool {
        let host = normalize(host);
        self.entries.iter().any(|(h, p)| *h == host && *p == port)
    }

    /// The upstream for `choice`, or the one 403 every refusal gets. Resolves the name to
    /// check where it points; an allow-listed name that does not resolve is a 503.
    pub async fn admit(
        &self,
        choice: &ServerChoice,
        allow_plaintext: bool,
    ) -> Result<Upstream, ApiError> {
        if !self.permits(&choice.host, choice.port) {
            return Err(refused());
        }
        let host = normalize(&choice.host);
        let addresses: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), choice.port))
            .await
            .map_err(|_| ApiError::unavailable("The IMAP server's name does not resolve."))?
            .map(|a| a.ip())
            .collect();
        if addresses.is_empty() || !addresses.iter().all(|a| reachable(*a)) {
            return Err(refused());
        }
        if choice.security == Security::Plain
            && !allow_plaintext
            && !addresses.iter().all(IpAddr::is_loopback)
        {
            return Err(refused());
        }
        Ok(Upstream {
            host,
            port: choice.port,
            security: choice.security,
        })
    }
}

/// The one answer to every refused server: it says nothing about why.
pub fn refused() -> ApiError {
    ApiError::forbidden("This IMAP server is not allowed.")
}

fn normalize(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// Whether a mail server can live at `address`.
fn reachable(address: IpAddr) -> bool {
    let address = match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    };
    match address {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() || v4.is_link_local())
        }
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast() || v6.is_unicast_link_local()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_spelling_and_port_are_permitted() {
        let list = AllowedServers::parse(&[
            "imap.example.com:993".into(),
            " Mail.Example.org.:143".into(),
            "[2001:db8::5]:993".into(),
        ])
        .expect("parses");
        assert!(list.permits("imap.example.com", 993));
        assert!(list.permits("IMAP.example.COM.", 993));
        assert!(list.permits("mail.example.org", 143));
        assert!(list.permits("2001:db8::5", 993));
        for (host, port) in [
            ("imap.example.com", 143),
            ("imap.example.com.evil", 993),
            ("example.com", 993),
            ("imap.example.com:993", 993),
            ("2001:db8::05", 993),
            ("", 993),
        ] {
            assert!(!list.permits(host, port), "{host}:{port}");
        }
        assert!(!AllowedServers::default().permits("imap.example.com", 993));
    }

    #[test]
    fn a_port_is_any_whole_json_number_in_range() {
        let parse = |port: serde_json::Value| {
            serde_json::from_value::<ServerChoice>(
                serde_json::json!({"host": "h", "port": port, "security": "tls"}),
            )
            .map(|c| c.port)
        };
        assert_eq!(parse(serde_json::json!(993)).ok(), Some(993));
        assert_eq!(parse(serde_json::json!(793.0)).ok(), Some(793));
        for bad in [
            serde_json::json!(993.5),
            serde_json::json!(70000),
            serde_json::json!(-1),
            serde_json::json!("993"),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_entries_are_refused_at_start_up() {
        for bad in [
            "imap.example.com",
            "imap.example.com:0",
            "host:port",
            ":993",
        ] {
            assert!(AllowedServers::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn metadata_and_special_addresses_are_not_mail_servers() {
        for bad in [
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "fe80::1",
            "ff02::1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!reachable(bad.parse().expect("ip")), "{bad}");
        }
        for good in ["127.0.0.1", "10.0.0.5", "192.0.2.1", "::1", "2001:db8::1"] {
            assert!(reachable(good.parse().expect("ip")), "{good}");
        }
    }
}
