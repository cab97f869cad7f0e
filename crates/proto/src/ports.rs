//! Choosing a free port for a server whose address others must know before it starts (the
//! replicas of a group are each told every member's address).

use std::net::TcpListener;

/// Where the kernel picks the ports of outgoing connections, unless it says otherwise
/// (`/proc/sys/net/ipv4/ip_local_port_range`): a port chosen there may be taken by any
/// connection before the server binds it.
const EPHEMERAL: (u16, u16) = (32768, 60999);

/// A port on `host` that is free now and outside the range outgoing connections take
/// theirs from, so that only another listener could take it before it is bound. Tries
/// ports below that range in a pseudo-random order.
pub fn free_port(host: &str) -> std::io::Result<u16> {
    let host = host.trim_matches(['[', ']']);
    let (low, _) = ephemeral_range().unwrap_or(EPHEMERAL);
    let floor: u32 = 10_000;
    let span = u32::from(low).saturating_sub(floor).max(1);
    let mut seed = [0u8; 4];
    let _ = getrandom::fill(&mut seed);
    let start = u32::from_le_bytes(seed) % span;
    for step in 0..span.min(2_000) {
        // A stride coprime with most spans walks over different ports.
        let port = floor + (start + step * 7_919) % span;
        let Ok(port) = u16::try_from(port) else { continue };
        if TcpListener::bind((host, port)).is_ok() {
            return Ok(port);
        }
    }
    // Everything tried was taken: let the kernel choose.
    Ok(TcpListener::bind((host, 0))?.local_addr()?.port())
}

fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
    Some((parts.next()??, parts.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_is_bindable_and_outside_the_ephemeral_range() {
        let (low, high) = ephemeral_range().unwrap_or(EPHEMERAL);
        for _ in 0..20 {
            let port = free_port("127.0.0.1").expect("a port");
            assert!(port < low || port > high, "{port} is in {low}-{high}");
            TcpListener::bind(("127.0.0.1", port)).expect("still free");
        }
    }
}
