//! Where webhooks may be sent: any http/https URL, but no link-local or cloud
//! metadata address (what a server-side request forgery would aim at), unless
//! an operator allows the host or its network (`--webhook-allow-hosts`).
//! Loopback and private ranges are allowed: self-hosted intranets use them.
//!
//! The address rule is checked when a webhook is saved and again at every send,
//! on the addresses the name resolves to then, by the HTTP client's resolver
//! itself ([`GuardedResolver`]): a name that resolves to a harmless address at
//! creation and to a metadata address later (DNS rebinding) is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2_000;

/// The hosts and networks allowed beyond the address rule.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    hosts: Vec<String>,
    networks: Vec<(IpAddr, u8)>,
}

impl TargetPolicy {
    /// Reads `--webhook-allow-hosts`: host names, addresses or CIDRs.
    pub fn parse(entries: &[String]) -> anyhow::Result<TargetPolicy> {
        let mut policy = TargetPolicy::default();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if let Some((address, bits)) = entry.split_once('/') {
                let address: IpAddr = address.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "--webhook-allow-hosts: {entry:?} is no CIDR (e.g. 169.254.0.0/16)"
                    )
                })?;
                let max = if address.is_ipv4() { 32 } else { 128 };
                let bits: u8 = bits
                    .parse()
                    .ok()
                    .filter(|bits| *bits <= max)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--webhook-allow-hosts: {entry:?} has a prefix length out of 0..={max}"
                        )
                    })?;
                policy.networks.push((address, bits));
            } else if let Ok(address) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
                policy
                    .networks
                    .push((address, if address.is_ipv4() { 32 } else { 128 }));
            } else {
                policy.hosts.push(entry.to_ascii_lowercase());
            }
        }
        Ok(policy)
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    /// Why `address` (which `host` names) may not be sent to; `None` if it may.
    pub fn refusal(&self, host: &str, address: IpAddr) -> Option<String> {
        let kind = forbidden_kind(address)?;
        if self.host_allowed(host)
            || self
                .networks
                .iter()
                .any(|(network, bits)| contains(*network, *bits, address))
        {
            return None;
        }
        Some(format!(
            "{host} is {address}, a {kind} address: refused unless allowed by --webhook-allow-hosts"
        ))
    }
}

/// What kind of forbidden address this is, if it is one.
fn forbidden_kind(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => {
                Some("cloud metadata")
            }
            None if v6.segments()[0] & 0xffc0 == 0xfe80 => Some("link-local"),
            None => None,
        },
    }
}

fn forbidden_v4(v4: Ipv4Addr) -> Option<&'static str> {
    if v4 == Ipv4Addr::new(169, 254, 169, 254) || v4 == Ipv4Addr::new(100, 100, 100, 200) {
        Some("cloud metadata")
    } else if v4.is_link_local() {
        Some("link-local")
    } else {
        None
    }
}

fn contains(network: IpAddr, bits: u8, address: IpAddr) -> bool {
    match (network, address) {
        (IpAddr::V4(network), IpAddr::V4(address)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(network) & mask == u32::from(address) & mask
        }
        (IpAddr::V6(network), IpAddr::V6(address)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(network) & mask == u128::from(address) & mask
        }
        _ => false,
    }
}

/// A webhook URL checked for its form: http or https, a host, at most
/// [`MAX_URL_LEN`] characters, no user or password. The message names no field.
pub fn parse_url(text: &str) -> Result<Url, String> {
    if text.len() > MAX_URL_LEN {
        return Err(format!("must have at most {MAX_URL_LEN} characters"));
    }
    let url = Url::parse(text).map_err(|e| format!("is no URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".to_owned());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user or password".to_owned());
    }
    Ok(url)
}

/// The URL's host as an address, if it is one (the resolver never sees those).
pub fn literal_address(url: &Url) -> Option<IpAddr> {
    url.host_str()?.trim_matches(['[', ']']).parse().ok()
}

/// Checks a URL's addresses now: its literal address, or what its name
/// resolves to (a name that does not resolve yet passes: it is checked again
/// at each send).
pub async fn check_addresses(policy: &TargetPolicy, url: &Url) -> Result<(), String> {
    let host = url.host_str().unwrap_or_default();
    if let Some(address) = literal_address(url) {
        return policy.refusal(host, address).map_or(Ok(()), Err);
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let Ok(addresses) = tokio::net::lookup_host((host, port)).await else {
        return Ok(());
    };
    for address in addresses {
        if let Some(refusal) = policy.refusal(host, address.ip()) {
            return Err(refusal);
        }
    }
    Ok(())
}

/// The HTTP client's resolver: the system's, refusing a name any of whose
/// addresses the policy refuses.
pub struct GuardedResolver {
    pub policy: Arc<TargetPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for address in &addresses {
                if let Some(refusal) = policy.refusal(&host, address.ip()) {
                    return Err(refusal.into());
                }
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &TargetPolicy, address: &str) -> bool {
        policy.refusal("host", address.parse().unwrap()).is_some()
    }

    #[test]
    fn link_local_and_metadata_addresses_are_refused_unless_allowed() {
        let none = TargetPolicy::default();
        for address in [
            "169.254.169.254",
            "169.254.1.1",
            "100.100.100.200",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            assert!(refused(&none, address), "{address}");
        }
        for address in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "::1",
            "100.100.100.201",
            "8.8.8.8",
        ] {
            assert!(!refused(&none, address), "{address}");
        }
        let allowed =
            TargetPolicy::parse(&["169.254.0.0/16".into(), "metadata.internal".into()]).unwrap();
        assert!(!refused(&allowed, "169.254.169.254"));
        assert!(refused(&allowed, "fe80::1"));
        assert!(allowed
            .refusal("metadata.internal", "fe80::1".parse().unwrap())
            .is_none());
        assert!(TargetPolicy::parse(&["10.0.0.0/33".into()]).is_err());
    }

    #[test]
    fn urls_need_http_a_host_and_a_bounded_length() {
        assert!(parse_url("https://example.org/hook?a=1").is_ok());
        assert!(parse_url("http://127.0.0.1:8080/").is_ok());
        for bad in [
            "ftp://example.org/",
            "example.org",
            "http://",
            "https://u:p@example.org/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let long = format!("https://example.org/{}", "a".repeat(MAX_URL_LEN));
        assert!(parse_url(&long).is_err());
    }
}
