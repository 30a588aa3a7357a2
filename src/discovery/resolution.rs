//! The spec's resolution steps as a state machine.
//!
//! Step numbers in comments refer to the spec's "Resolving server names" list. The machine
//! never performs I/O: [`Resolution::step`] says what it needs next, and the answers come back
//! through [`Resolution::well_known`] and [`Resolution::srv`].

use ruma::{OwnedServerName, ServerName};

use super::srv::{self, SrvAnswer, SrvChoice};
use super::well_known::WellKnown;
use super::{bare_host, Destination, DiscoveryError, DEFAULT_FEDERATION_PORT};

/// What the resolution needs next, or its result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// GET `https://<hostname>/.well-known/matrix/server`, then call [`Resolution::well_known`].
    NeedWellKnown(String),
    /// Look up the SRV record of this name (`_matrix-fed._tcp.<host>` or the deprecated
    /// `_matrix._tcp.<host>`), then call [`Resolution::srv`].
    NeedSrv(String),
    /// The destination. `valid_for_secs` is how long it may be cached: the shortest lifetime
    /// of the answers it was built from, `None` when it came from the name alone.
    Done {
        destination: Destination,
        valid_for_secs: Option<u64>,
    },
}

/// Which SRV service is being asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    /// `_matrix-fed._tcp` (steps 3.3 and 4).
    MatrixFed,
    /// The deprecated `_matrix._tcp` (steps 3.4 and 5).
    Matrix,
}

impl Service {
    fn record_name(self, host: &str) -> String {
        match self {
            Service::MatrixFed => format!("_matrix-fed._tcp.{host}"),
            Service::Matrix => format!("_matrix._tcp.{host}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    WaitingWellKnown {
        hostname: String,
    },
    /// `host` is the delegated hostname after a valid well-known (step 3.3/3.4), else the
    /// server's own hostname (steps 4/5): SRV results are presented to it either way.
    WaitingSrv {
        host: String,
        service: Service,
    },
    Done(Destination),
}

/// One server name being resolved.
#[derive(Clone, Debug)]
pub struct Resolution {
    server_name: OwnedServerName,
    state: State,
    valid_for_secs: Option<u64>,
}

impl Resolution {
    /// Starts resolving `server_name`; steps 1 and 2 finish at once.
    pub fn new(server_name: &ServerName) -> Self {
        let state = match from_name_alone(server_name) {
            Some(destination) => State::Done(destination),
            // Step 3.
            None => State::WaitingWellKnown {
                hostname: server_name.host().to_ascii_lowercase(),
            },
        };
        Resolution {
            server_name: server_name.to_owned(),
            state,
            valid_for_secs: None,
        }
    }

    pub fn server_name(&self) -> &ServerName {
        &self.server_name
    }

    /// What the machine needs next, or its result.
    pub fn step(&self) -> Step {
        match &self.state {
            State::WaitingWellKnown { hostname } => Step::NeedWellKnown(hostname.clone()),
            State::WaitingSrv { host, service } => Step::NeedSrv(service.record_name(host)),
            State::Done(destination) => Step::Done {
                destination: destination.clone(),
                valid_for_secs: self.valid_for_secs,
            },
        }
    }

    /// Feeds the outcome of the well-known request. Out of order calls change nothing.
    pub fn well_known(&mut self, answer: &WellKnown) -> Step {
        let State::WaitingWellKnown { hostname } = &self.state else {
            return self.step();
        };
        let hostname = hostname.clone();
        self.shorten(answer.cache_secs);
        self.state = match &answer.delegation {
            // Step 4: no (valid) delegation, SRV for the server's own hostname.
            None => State::WaitingSrv {
                host: hostname,
                service: Service::MatrixFed,
            },
            Some(delegated) => delegated_state(delegated),
        };
        self.step()
    }

    /// Feeds the answer to the SRV lookup asked for; `random` picks among records of equal
    /// priority by weight (RFC 2782). Out of order calls change nothing.
    pub fn srv(&mut self, answer: &SrvAnswer, random: u32) -> Result<Step, DiscoveryError> {
        let State::WaitingSrv { host, service } = &self.state else {
            return Ok(self.step());
        };
        let (host, service) = (host.clone(), *service);
        if let Some(ttl) = answer.ttl_secs {
            self.shorten(srv::clamp_ttl(ttl));
        }
        self.state = match srv::choose(&answer.records, random) {
            SrvChoice::Target { target, port } => State::Done(presenting(host, target, port)),
            SrvChoice::Unavailable => {
                return Err(DiscoveryError::ServiceUnavailable(
                    service.record_name(&host),
                ))
            }
            // Steps 3.4 / 5: the deprecated service name next.
            SrvChoice::None if service == Service::MatrixFed => State::WaitingSrv {
                host,
                service: Service::Matrix,
            },
            // Steps 3.5 / 6: the hostname on 8448.
            SrvChoice::None => State::Done(presenting(host.clone(), host, DEFAULT_FEDERATION_PORT)),
        };
        Ok(self.step())
    }

    fn shorten(&mut self, secs: u64) {
        self.valid_for_secs = Some(self.valid_for_secs.map_or(secs, |v| v.min(secs)));
    }
}

/// Steps 3.1 to 3.3 for a valid `m.server`.
fn delegated_state(delegated: &ServerName) -> State {
    match from_name_alone(delegated) {
        // 3.1 and 3.2: like steps 1 and 2, with the delegated name.
        Some(destination) => State::Done(destination),
        // 3.3: SRV for the delegated hostname.
        None => State::WaitingSrv {
            host: delegated.host().to_ascii_lowercase(),
            service: Service::MatrixFed,
        },
    }
}

/// Steps 1 and 2 (and 3.1, 3.2 for a delegated name): an IP literal, or a hostname with an
/// explicit port, needs no lookup. `Host` is the name as written, with its port if it has one;
/// the certificate must be valid for the host (the bare IP address for IP literals).
fn from_name_alone(name: &ServerName) -> Option<Destination> {
    let host = bare_host(name.host()).to_ascii_lowercase();
    let port = if name.is_ip_literal() {
        name.port().unwrap_or(DEFAULT_FEDERATION_PORT)
    } else {
        name.port()?
    };
    Some(Destination {
        connect_host: host.clone(),
        connect_port: port,
        host_header: name.as_str().to_owned(),
        tls_server_name: host,
    })
}

/// A lookup's result: connect to `target:port`, present `name` (Host and certificate).
fn presenting(name: String, target: String, port: u16) -> Destination {
    Destination {
        connect_host: target,
        connect_port: port,
        host_header: name.clone(),
        tls_server_name: name,
    }
}

#[cfg(test)]
#[path = "resolution_tests.rs"]
mod tests;
