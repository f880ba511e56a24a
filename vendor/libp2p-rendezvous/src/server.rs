// Copyright 2021 COMIT Network.
//
// Permission is hereby granted, free of charge, to any person obtaining a
// copy of this software and associated documentation files (the "Software"),
// to deal in the Software without restriction, including without limitation
// the rights to use, copy, modify, merge, publish, distribute, sublicense,
// and/or sell copies of the Software, and to permit persons to whom the
// Software is furnished to do so, subject to the following conditions:
//
// The above copyright notice and this permission notice shall be included in
// all copies or substantial portions of the Software.
//
// THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS
// OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
// FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
// AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
// LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING
// FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
// DEALINGS IN THE SOFTWARE.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    iter,
    net::IpAddr,
    task::{Context, Poll},
    time::Duration,
};

use bimap::BiMap;
use futures::FutureExt;
use hashlink::LruCache;
use libp2p_core::{Endpoint, Multiaddr, multiaddr::Protocol, transport::PortUse};
use libp2p_identity::PeerId;
use libp2p_request_response::ProtocolSupport;
use libp2p_swarm::{
    ConnectionDenied, ConnectionId, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent,
    ToSwarm,
    behaviour::{ConnectionClosed, FromSwarm},
};
use web_time::Instant;

use crate::{
    MAX_TTL, MIN_TTL,
    codec::{Cookie, ErrorCode, Message, Namespace, NewRegistration, Registration, Ttl},
};

/// Default maximum active registrations per peer.
pub const MAX_REGISTRATION_PEER: usize = 32;
/// Default maximum active registrations in total.
pub const MAX_REGISTRATIONS_TOTAL: usize = 10_000;
/// Default size of the cache that stores client cookies.
/// Palaver: 1000 instead of 10 000 (each cookie holds a set of ids).
pub const COOKIES_CACHE_SIZE: usize = 1000;
/// Palaver: default most registration ids held by all cookies together.
pub const MAX_COOKIE_IDS: usize = 100_000;
/// Palaver: default largest `limit` a discover is served with (a larger or
/// absent limit is clamped to it).
pub const MAX_DISCOVER_LIMIT: u64 = 100;
/// Palaver: default most registrations made over connections from one IPv4
/// address or IPv6 /48.
pub const MAX_REGISTRATIONS_PER_IP: usize = 1000;

pub struct Behaviour {
    inner: libp2p_request_response::Behaviour<crate::codec::Codec>,

    registrations: Registrations,

    /// Palaver: the address block (IPv4 address, IPv6 /48) of each open
    /// connection, to charge registrations to it. Bounded by the swarm's
    /// connections.
    connection_blocks: HashMap<ConnectionId, Option<IpBlock>>,
}

pub struct Config {
    min_ttl: Ttl,
    max_ttl: Ttl,
    max_registrations_per_peer: usize,
    max_registrations_total: usize,
    max_cookies: usize,
    // Palaver: the limits below are ours.
    max_cookie_ids: usize,
    max_discover_limit: u64,
    max_registrations_per_ip: usize,
}

impl Config {
    pub fn with_min_ttl(mut self, min_ttl: Ttl) -> Self {
        self.min_ttl = min_ttl;
        self
    }

    pub fn with_max_ttl(mut self, max_ttl: Ttl) -> Self {
        self.max_ttl = max_ttl;
        self
    }

    pub fn with_max_registration_per_peer(mut self, max: usize) -> Self {
        self.max_registrations_per_peer = max;
        self
    }

    pub fn with_max_registration_total(mut self, max: usize) -> Self {
        self.max_registrations_total = max;
        self
    }

    pub fn with_max_stored_cookies(mut self, max: usize) -> Self {
        self.max_cookies = max;
        self
    }

    /// Palaver: most registration ids all stored cookies hold together; the
    /// least recently used cookies are dropped to stay under it.
    pub fn with_max_cookie_ids(mut self, max: usize) -> Self {
        self.max_cookie_ids = max;
        self
    }

    /// Palaver: the largest `limit` a discover is served with; a larger (or
    /// absent) limit is clamped to it, not refused. At least 1.
    pub fn with_max_discover_limit(mut self, max: u64) -> Self {
        self.max_discover_limit = max.max(1);
        self
    }

    /// Palaver: most registrations held for peers connected from one IPv4
    /// address or one IPv6 /48.
    pub fn with_max_registrations_per_ip(mut self, max: usize) -> Self {
        self.max_registrations_per_ip = max;
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            min_ttl: MIN_TTL,
            max_ttl: MAX_TTL,
            max_registrations_per_peer: MAX_REGISTRATION_PEER,
            max_registrations_total: MAX_REGISTRATIONS_TOTAL,
            max_cookies: COOKIES_CACHE_SIZE,
            max_cookie_ids: MAX_COOKIE_IDS,
            max_discover_limit: MAX_DISCOVER_LIMIT,
            max_registrations_per_ip: MAX_REGISTRATIONS_PER_IP,
        }
    }
}

impl Behaviour {
    /// Create a new instance of the rendezvous [`NetworkBehaviour`].
    pub fn new(config: Config) -> Self {
        Self {
            inner: libp2p_request_response::Behaviour::with_codec(
                crate::codec::Codec::default(),
                iter::once((crate::PROTOCOL_NAME, ProtocolSupport::Inbound)),
                libp2p_request_response::Config::default(),
            ),

            registrations: Registrations::with_config(config),
            connection_blocks: HashMap::new(),
        }
    }
}

/// Palaver: the address block a connection comes from: its IPv4 address, or
/// the /48 of its IPv6 address (what one site usually holds). An IPv4-mapped
/// IPv6 address counts as the IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpBlock {
    V4([u8; 4]),
    V6([u8; 6]),
}

impl IpBlock {
    /// The block of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => IpBlock::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpBlock::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    IpBlock::V6([o[0], o[1], o[2], o[3], o[4], o[5]])
                }
            },
        }
    }

    /// The block of the first IP address in `addr`, if any.
    pub fn of_addr(addr: &Multiaddr) -> Option<Self> {
        addr.iter().find_map(|p| match p {
            Protocol::Ip4(ip) => Some(IpBlock::of(IpAddr::V4(ip))),
            Protocol::Ip6(ip) => Some(IpBlock::of(IpAddr::V6(ip))),
            _ => None,
        })
    }
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// We successfully served a discover request from a peer.
    DiscoverServed {
        enquirer: PeerId,
        registrations: Vec<Registration>,
    },
    /// We failed to serve a discover request for a peer.
    DiscoverNotServed { enquirer: PeerId, error: ErrorCode },
    /// A peer successfully registered with us.
    PeerRegistered {
        peer: PeerId,
        registration: Registration,
    },
    /// We declined a registration from a peer.
    PeerNotRegistered {
        peer: PeerId,
        namespace: Namespace,
        error: ErrorCode,
    },
    /// A peer successfully unregistered with us.
    PeerUnregistered { peer: PeerId, namespace: Namespace },
    /// A registration from a peer expired.
    RegistrationExpired(Registration),
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = <libp2p_request_response::Behaviour<
        crate::codec::Codec,
    > as NetworkBehaviour>::ConnectionHandler;

    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let handler = self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )?;
        // Palaver: remember where the connection comes from.
        self.connection_blocks
            .insert(connection_id, IpBlock::of_addr(remote_addr));
        Ok(handler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let handler = self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )?;
        // Palaver: remember where the connection goes to.
        self.connection_blocks
            .insert(connection_id, IpBlock::of_addr(addr));
        Ok(handler)
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer_id, connection, event);
    }

    #[tracing::instrument(level = "trace", name = "NetworkBehaviour::poll", skip(self, cx))]
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Poll::Ready(ExpiredRegistration(registration)) = self.registrations.poll(cx) {
            return Poll::Ready(ToSwarm::GenerateEvent(Event::RegistrationExpired(
                registration,
            )));
        }

        loop {
            if let Poll::Ready(to_swarm) = self.inner.poll(cx) {
                match to_swarm {
                    ToSwarm::GenerateEvent(libp2p_request_response::Event::Message {
                        peer: peer_id,
                        connection_id,
                        message:
                            libp2p_request_response::Message::Request {
                                request, channel, ..
                            },
                    }) => {
                        // Palaver: the request is charged to its connection's address block.
                        let block = self
                            .connection_blocks
                            .get(&connection_id)
                            .copied()
                            .flatten();
                        if let Some((event, response)) =
                            handle_request(peer_id, block, request, &mut self.registrations)
                        {
                            if let Some(resp) = response
                                && let Err(resp) = self.inner.send_response(channel, resp)
                            {
                                tracing::debug!(
                                    %peer_id,
                                    "Failed to send response, peer disconnected {resp:?}"
                                );
                            }

                            return Poll::Ready(ToSwarm::GenerateEvent(event));
                        }

                        continue;
                    }
                    ToSwarm::GenerateEvent(libp2p_request_response::Event::InboundFailure {
                        peer,
                        request_id,
                        error,
                        ..
                    }) => {
                        // Palaver: debug, not warn: any client can cause it at will.
                        tracing::debug!(
                            %peer,
                            request=%request_id,
                            "Inbound request with peer failed: {error}"
                        );

                        continue;
                    }
                    ToSwarm::GenerateEvent(libp2p_request_response::Event::ResponseSent {
                        ..
                    })
                    | ToSwarm::GenerateEvent(libp2p_request_response::Event::Message {
                        peer: _,
                        message: libp2p_request_response::Message::Response { .. },
                        ..
                    })
                    | ToSwarm::GenerateEvent(libp2p_request_response::Event::OutboundFailure {
                        ..
                    }) => {
                        continue;
                    }
                    other => {
                        let new_to_swarm = other
                            .map_out(|_| unreachable!("we manually map `GenerateEvent` variants"));

                        return Poll::Ready(new_to_swarm);
                    }
                };
            }

            return Poll::Pending;
        }
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        // Palaver: a peer's registrations go with its last connection: a
        // registration advertises a peer the relay can reach, and one that
        // has gone must not keep its slots (or be dialled) for the whole ttl.
        if let FromSwarm::ConnectionClosed(ConnectionClosed {
            peer_id,
            connection_id,
            remaining_established,
            ..
        }) = event
        {
            self.connection_blocks.remove(&connection_id);
            if remaining_established == 0 {
                let dropped = self.registrations.remove_peer(peer_id);
                if dropped > 0 {
                    tracing::debug!(%peer_id, dropped, "registrations of a disconnected peer dropped");
                }
            }
        }
        self.inner.on_swarm_event(event);
    }
}

fn handle_request(
    peer_id: PeerId,
    block: Option<IpBlock>,
    message: Message,
    registrations: &mut Registrations,
) -> Option<(Event, Option<Message>)> {
    match message {
        Message::Register(registration) => {
            if registration.record.peer_id() != peer_id {
                let error = ErrorCode::NotAuthorized;

                let event = Event::PeerNotRegistered {
                    peer: peer_id,
                    namespace: registration.namespace,
                    error,
                };

                return Some((event, Some(Message::RegisterResponse(Err(error)))));
            }

            let namespace = registration.namespace.clone();

            match registrations.add(registration, block) {
                Ok(registration) => {
                    let response = Message::RegisterResponse(Ok(registration.ttl));

                    let event = Event::PeerRegistered {
                        peer: peer_id,
                        registration,
                    };

                    Some((event, Some(response)))
                }
                Err(error) => {
                    let response = Message::RegisterResponse(Err(error));

                    let event = Event::PeerNotRegistered {
                        peer: peer_id,
                        namespace,
                        error,
                    };

                    Some((event, Some(response)))
                }
            }
        }
        Message::Unregister(namespace) => {
            registrations.remove(namespace.clone(), peer_id);

            let event = Event::PeerUnregistered {
                peer: peer_id,
                namespace,
            };

            Some((event, None))
        }
        // Palaver: a discover without a namespace would list every namespace
        // and every registered peer's addresses: refused.
        Message::Discover {
            namespace: None, ..
        } => {
            let error = ErrorCode::InvalidNamespace;
            let event = Event::DiscoverNotServed {
                enquirer: peer_id,
                error,
            };
            Some((event, Some(Message::DiscoverResponse(Err(error)))))
        }
        Message::Discover {
            namespace,
            cookie,
            limit,
        } => match registrations.get(namespace, cookie, limit) {
            Ok((registrations, cookie)) => {
                let discovered = registrations.cloned().collect::<Vec<_>>();

                let response = Message::DiscoverResponse(Ok((discovered.clone(), cookie)));

                let event = Event::DiscoverServed {
                    enquirer: peer_id,
                    registrations: discovered,
                };

                Some((event, Some(response)))
            }
            Err(_) => {
                let error = ErrorCode::InvalidCookie;

                let response = Message::DiscoverResponse(Err(error));

                let event = Event::DiscoverNotServed {
                    enquirer: peer_id,
                    error,
                };

                Some((event, Some(response)))
            }
        },
        Message::RegisterResponse(_) => None,
        Message::DiscoverResponse(_) => None,
    }
}

/// Palaver: a counter, not a random number: two registrations never share an id.
#[derive(Debug, Eq, PartialEq, Hash, Copy, Clone, PartialOrd, Ord)]
struct RegistrationId(u64);

#[derive(Debug, PartialEq)]
struct ExpiredRegistration(Registration);

/// Palaver: a registration with what it is charged to and when it ends.
struct Entry {
    registration: Registration,
    block: Option<IpBlock>,
    expires: Instant,
}

struct Registrations {
    config: Config,
    registrations_for_peer: BiMap<(PeerId, Namespace), RegistrationId>,
    registrations: HashMap<RegistrationId, Entry>,
    cookies: LruCache<Cookie, HashSet<RegistrationId>>,
    // Palaver: upstream pushed one boxed timer per registration (and kept a
    // replaced registration until its timer fired). One ordered set of
    // expiries and one timer for the earliest instead: memory follows the
    // live registrations.
    expiries: BTreeSet<(Instant, RegistrationId)>,
    timer: Option<(Instant, futures_timer::Delay)>,
    next_id: u64,
    /// Palaver: registrations per peer and per address block, so that the
    /// caps cost O(1) (upstream counted by scanning every registration).
    per_peer: HashMap<PeerId, usize>,
    per_block: HashMap<IpBlock, usize>,
    /// Palaver: registration ids held by all cookies together.
    cookie_ids: usize,
}

impl Default for Registrations {
    fn default() -> Self {
        Registrations::with_config(Config::default())
    }
}

/// Palaver: one more in a count map.
fn count_up<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K) {
    let n = map.entry(key).or_insert(0);
    *n = n.saturating_add(1);
}

/// Palaver: one fewer in a count map, the key gone at zero.
fn count_down<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K) {
    if let Some(n) = map.get_mut(&key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(&key);
        }
    }
}

impl Registrations {
    fn with_config(config: Config) -> Self {
        Self {
            registrations_for_peer: Default::default(),
            registrations: Default::default(),
            // Palaver: at least one entry (LruCache::new(0) holds nothing).
            cookies: LruCache::new(config.max_cookies.max(1)),
            config,
            expiries: BTreeSet::new(),
            timer: None,
            next_id: 0,
            per_peer: HashMap::new(),
            per_block: HashMap::new(),
            cookie_ids: 0,
        }
    }

    fn add(
        &mut self,
        new_registration: NewRegistration,
        block: Option<IpBlock>,
    ) -> Result<Registration, ErrorCode> {
        let ttl = new_registration.effective_ttl();
        if ttl > self.config.max_ttl || ttl < self.config.min_ttl {
            return Err(ErrorCode::InvalidTtl);
        }
        // Palaver: checked, whatever max_ttl is configured.
        let expires = Instant::now()
            .checked_add(Duration::from_secs(ttl))
            .ok_or(ErrorCode::InvalidTtl)?;

        let peer = new_registration.record.peer_id();
        let namespace = new_registration.namespace;

        // Palaver: a re-registration of the same (peer, namespace) replaces
        // the old one, which is dropped now (upstream kept it, and its timer,
        // until its own ttl ran out). It does not count against the caps.
        if let Some(old) = self
            .registrations_for_peer
            .get_by_left(&(peer, namespace.clone()))
            .copied()
        {
            self.remove_id(old);
        }

        // Palaver: `>=` (upstream's `>` let the total go one over) and a cap
        // per address block.
        if self.per_peer.get(&peer).copied().unwrap_or(0) >= self.config.max_registrations_per_peer
            || self.registrations.len() >= self.config.max_registrations_total
            || block.is_some_and(|b| {
                self.per_block.get(&b).copied().unwrap_or(0) >= self.config.max_registrations_per_ip
            })
        {
            return Err(ErrorCode::Unavailable);
        }

        let registration_id = RegistrationId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);

        self.registrations_for_peer
            .insert((peer, namespace.clone()), registration_id);

        let registration = Registration {
            namespace,
            record: new_registration.record,
            ttl,
        };
        self.registrations.insert(
            registration_id,
            Entry {
                registration: registration.clone(),
                block,
                expires,
            },
        );
        self.expiries.insert((expires, registration_id));
        count_up(&mut self.per_peer, peer);
        if let Some(b) = block {
            count_up(&mut self.per_block, b);
        }

        Ok(registration)
    }

    fn remove(&mut self, namespace: Namespace, peer_id: PeerId) {
        if let Some(id) = self
            .registrations_for_peer
            .get_by_left(&(peer_id, namespace))
            .copied()
        {
            self.remove_id(id);
        }
    }

    /// Palaver: drops every registration of `peer`; returns how many.
    fn remove_peer(&mut self, peer: PeerId) -> usize {
        if !self.per_peer.contains_key(&peer) {
            return 0;
        }
        let ids: Vec<RegistrationId> = self
            .registrations_for_peer
            .iter()
            .filter(|((p, _), _)| *p == peer)
            .map(|(_, id)| *id)
            .collect();
        let n = ids.len();
        for id in ids {
            self.remove_id(id);
        }
        n
    }

    /// Palaver: drops one registration from every index (cookies included).
    fn remove_id(&mut self, id: RegistrationId) -> Option<Registration> {
        let entry = self.registrations.remove(&id)?;
        self.registrations_for_peer.remove_by_right(&id);
        self.expiries.remove(&(entry.expires, id));
        count_down(&mut self.per_peer, entry.registration.record.peer_id());
        if let Some(b) = entry.block {
            count_down(&mut self.per_block, b);
        }
        let mut held = 0usize;
        self.cookies.retain(|_, registrations| {
            registrations.remove(&id);
            held = held.saturating_add(registrations.len());
            // retain all cookies where there are still registrations left
            !registrations.is_empty()
        });
        self.cookie_ids = held;
        Some(entry.registration)
    }

    fn get(
        &mut self,
        discover_namespace: Option<Namespace>,
        cookie: Option<Cookie>,
        limit: Option<u64>,
    ) -> Result<(impl Iterator<Item = &Registration> + '_, Cookie), CookieNamespaceMismatch> {
        let cookie_namespace = cookie.as_ref().and_then(|cookie| cookie.namespace());

        match (discover_namespace.as_ref(), cookie_namespace) {
            // discover all namespace but cookie is specific to a namespace? => bad
            (None, Some(_)) => return Err(CookieNamespaceMismatch),
            // discover for a namespace but cookie is for a different namespace? => bad
            (Some(namespace), Some(cookie_namespace)) if namespace != cookie_namespace => {
                return Err(CookieNamespaceMismatch);
            }
            // every other combination is fine
            _ => {}
        }

        // Palaver: the cookie's set is taken, not cloned: the new cookie
        // holds everything the old one did, so the old one is dropped
        // (upstream kept both, so paging grew memory quadratically).
        let mut reggos_of_last_discover = cookie
            .and_then(|cookie| self.cookies.remove(&cookie))
            .unwrap_or_default();
        self.cookie_ids = self
            .cookie_ids
            .saturating_sub(reggos_of_last_discover.len());

        // Palaver: the limit is clamped, never beyond max_discover_limit.
        let limit = limit
            .unwrap_or(self.config.max_discover_limit)
            .min(self.config.max_discover_limit);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);

        let ids = self
            .registrations_for_peer
            .iter()
            .filter_map({
                |((_, namespace), registration_id)| {
                    if reggos_of_last_discover.contains(registration_id) {
                        return None;
                    }

                    match discover_namespace.as_ref() {
                        Some(discover_namespace) if discover_namespace == namespace => {
                            Some(registration_id)
                        }
                        Some(_) => None,
                        None => Some(registration_id),
                    }
                }
            })
            .take(limit)
            .cloned()
            .collect::<Vec<_>>();

        reggos_of_last_discover.extend(&ids);

        let new_cookie = discover_namespace
            .map(Cookie::for_namespace)
            .unwrap_or_else(Cookie::for_all_namespaces);
        self.store_cookie(new_cookie.clone(), reggos_of_last_discover);

        let regs = &self.registrations;
        let registrations = ids
            .into_iter()
            .filter_map(move |id| regs.get(&id).map(|entry| &entry.registration));

        Ok((registrations, new_cookie))
    }

    /// Palaver: keeps a cookie within both caps (count and ids held),
    /// dropping the least recently used first. A set larger than the whole
    /// budget is not kept (the client's next page starts over).
    fn store_cookie(&mut self, cookie: Cookie, ids: HashSet<RegistrationId>) {
        if ids.len() > self.config.max_cookie_ids {
            return;
        }
        while self.cookies.len() >= self.cookies.capacity()
            || self.cookie_ids.saturating_add(ids.len()) > self.config.max_cookie_ids
        {
            match self.cookies.remove_lru() {
                Some((_, dropped)) => {
                    self.cookie_ids = self.cookie_ids.saturating_sub(dropped.len());
                }
                None => break,
            }
        }
        self.cookie_ids = self.cookie_ids.saturating_add(ids.len());
        self.cookies.insert(cookie, ids);
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ExpiredRegistration> {
        loop {
            let Some(&(at, id)) = self.expiries.first() else {
                self.timer = None;
                return Poll::Pending;
            };
            let now = Instant::now();
            if at <= now {
                self.timer = None;
                if let Some(registration) = self.remove_id(id) {
                    return Poll::Ready(ExpiredRegistration(registration));
                }
                // remove_id always removes the expiry; never loops on it.
                self.expiries.remove(&(at, id));
                continue;
            }
            // Palaver: one timer, armed for the earliest expiry.
            let timer = match &mut self.timer {
                Some((armed, timer)) if *armed == at => timer,
                slot => {
                    let delay = futures_timer::Delay::new(at.saturating_duration_since(now));
                    &mut slot.insert((at, delay)).1
                }
            };
            if timer.poll_unpin(cx).is_pending() {
                return Poll::Pending;
            }
            // The timer fired: the loop finds the expiry due (or re-arms
            // for what is left of it).
            self.timer = None;
        }
    }
}

#[derive(Debug, Eq, PartialEq)]
struct CookieNamespaceMismatch;

#[cfg(test)]
mod tests {
    use libp2p_core::PeerRecord;
    use libp2p_identity as identity;
    use web_time::SystemTime;

    use super::*;

    #[test]
    fn given_cookie_from_discover_when_discover_again_then_only_get_diff() {
        let mut registrations = Registrations::default();
        registrations
            .add(new_dummy_registration("foo"), None)
            .unwrap();
        registrations
            .add(new_dummy_registration("foo"), None)
            .unwrap();

        let (initial_discover, cookie) = registrations.get(None, None, None).unwrap();
        assert_eq!(initial_discover.count(), 2);

        let (subsequent_discover, _) = registrations.get(None, Some(cookie), None).unwrap();
        assert_eq!(subsequent_discover.count(), 0);
    }

    #[test]
    fn given_registrations_when_discover_all_then_all_are_returned() {
        let mut registrations = Registrations::default();
        registrations
            .add(new_dummy_registration("foo"), None)
            .unwrap();
        registrations
            .add(new_dummy_registration("foo"), None)
            .unwrap();

        let (discover, _) = registrations.get(None, None, None).unwrap();

        assert_eq!(discover.count(), 2);
    }

    #[test]
    fn given_registrations_when_discover_only_for_specific_namespace_then_only_those_are_returned()
    {
        let mut registrations = Registrations::default();
        registrations
            .add(new_dummy_registration("foo"), None)
            .unwrap();
        registrations
            .add(new_dummy_registration("bar"), None)
            .unwrap();

        let (discover, _) = registrations
            .get(Some(Namespace::from_static("foo")), None, None)
            .unwrap();

        assert_eq!(
            discover.map(|r| &r.namespace).collect::<Vec<_>>(),
            vec!["foo"]
        );
    }

    #[test]
    fn given_reregistration_old_registration_is_discarded() {
        let alice = identity::Keypair::generate_ed25519();
        let mut registrations = Registrations::default();
        registrations
            .add(new_registration("foo", alice.clone(), None), None)
            .unwrap();
        registrations
            .add(new_registration("foo", alice, None), None)
            .unwrap();

        let (discover, _) = registrations
            .get(Some(Namespace::from_static("foo")), None, None)
            .unwrap();

        assert_eq!(
            discover.map(|r| &r.namespace).collect::<Vec<_>>(),
            vec!["foo"]
        );
    }

    #[test]
    fn given_cookie_from_2nd_discover_does_not_return_nodes_from_first_discover() {
        let mut registrations = Registrations::default();
        registrations
            .add(new_dummy_registration("foo"), None)
            .unwrap();
        registrations
            .add(new_dummy_registration("foo"), None)
            .unwrap();

        let (initial_discover, cookie1) = registrations.get(None, None, None).unwrap();
        assert_eq!(initial_discover.count(), 2);

        let (subsequent_discover, cookie2) = registrations.get(None, Some(cookie1), None).unwrap();
        assert_eq!(subsequent_discover.count(), 0);

        let (subsequent_discover, _) = registrations.get(None, Some(cookie2), None).unwrap();
        assert_eq!(subsequent_discover.count(), 0);
    }

    #[test]
    fn cookie_from_different_discover_request_is_not_valid() {
        let mut registrations = Registrations::default();
        registrations
            .add(new_dummy_registration("foo"), None)
            .unwrap();
        registrations
            .add(new_dummy_registration("bar"), None)
            .unwrap();

        let (_, foo_discover_cookie) = registrations
            .get(Some(Namespace::from_static("foo")), None, None)
            .unwrap();
        let result = registrations.get(
            Some(Namespace::from_static("bar")),
            Some(foo_discover_cookie),
            None,
        );

        assert!(matches!(result, Err(CookieNamespaceMismatch)))
    }

    #[tokio::test]
    async fn given_two_registration_ttls_one_expires_one_lives() {
        let mut registrations =
            Registrations::with_config(Config::default().with_min_ttl(0).with_max_ttl(4));

        let start_time = SystemTime::now();

        registrations
            .add(new_dummy_registration_with_ttl("foo", 1), None)
            .unwrap();
        registrations
            .add(new_dummy_registration_with_ttl("bar", 4), None)
            .unwrap();

        let event = registrations.next_event().await;

        let elapsed = start_time.elapsed().unwrap();
        assert!(elapsed.as_secs() >= 1);
        assert!(elapsed.as_secs() < 2);

        assert_eq!(event.0.namespace, Namespace::from_static("foo"));

        {
            let (mut discovered_foo, _) = registrations
                .get(Some(Namespace::from_static("foo")), None, None)
                .unwrap();
            assert!(discovered_foo.next().is_none());
        }
        let (mut discovered_bar, _) = registrations
            .get(Some(Namespace::from_static("bar")), None, None)
            .unwrap();
        assert!(discovered_bar.next().is_some());
    }

    #[tokio::test]
    async fn given_peer_unregisters_before_expiry_do_not_emit_registration_expired() {
        let mut registrations =
            Registrations::with_config(Config::default().with_min_ttl(1).with_max_ttl(10));
        let dummy_registration = new_dummy_registration_with_ttl("foo", 2);
        let namespace = dummy_registration.namespace.clone();
        let peer_id = dummy_registration.record.peer_id();

        registrations.add(dummy_registration, None).unwrap();
        registrations.no_event_for(1).await;
        registrations.remove(namespace, peer_id);

        registrations.no_event_for(3).await
    }

    /// FuturesUnordered stop polling for ready futures when poll_next() is called until a None
    /// value is returned. To prevent the next_expiry future from going to "sleep", next_expiry
    /// is initialised with a future that always returns pending. This test ensures that
    /// FuturesUnordered does not stop polling for ready futures.
    #[tokio::test]
    async fn given_all_registrations_expired_then_successfully_handle_new_registration_and_expiry()
    {
        let mut registrations =
            Registrations::with_config(Config::default().with_min_ttl(0).with_max_ttl(10));
        let dummy_registration = new_dummy_registration_with_ttl("foo", 1);

        registrations.add(dummy_registration.clone(), None).unwrap();
        let _ = registrations.next_event_in_at_most(2).await;

        registrations.no_event_for(1).await;

        registrations.add(dummy_registration, None).unwrap();
        let _ = registrations.next_event_in_at_most(2).await;
    }

    #[tokio::test]
    async fn cookies_are_cleaned_up_if_registrations_expire() {
        let mut registrations =
            Registrations::with_config(Config::default().with_min_ttl(1).with_max_ttl(10));

        registrations
            .add(new_dummy_registration_with_ttl("foo", 2), None)
            .unwrap();
        let (_, _) = registrations.get(None, None, None).unwrap();

        assert_eq!(registrations.cookies.len(), 1);

        let _ = registrations.next_event_in_at_most(3).await;

        assert_eq!(registrations.cookies.len(), 0);
    }

    #[test]
    fn given_limit_discover_only_returns_n_results() {
        let mut registrations = Registrations::default();
        registrations
            .add(new_dummy_registration("foo"), None)
            .unwrap();
        registrations
            .add(new_dummy_registration("foo"), None)
            .unwrap();

        let (registrations, _) = registrations.get(None, None, Some(1)).unwrap();

        assert_eq!(registrations.count(), 1);
    }

    #[test]
    fn given_limit_cookie_can_be_used_for_pagination() {
        let mut registrations = Registrations::default();
        registrations
            .add(new_dummy_registration("foo"), None)
            .unwrap();
        registrations
            .add(new_dummy_registration("foo"), None)
            .unwrap();

        let (discover1, cookie) = registrations.get(None, None, Some(1)).unwrap();
        assert_eq!(discover1.count(), 1);

        let (discover2, _) = registrations.get(None, Some(cookie), None).unwrap();
        assert_eq!(discover2.count(), 1);
    }

    // Palaver: tests of the limits added for Palaver.

    #[test]
    fn a_discover_without_a_namespace_is_refused() {
        let mut registrations = Registrations::default();
        registrations
            .add(new_dummy_registration("foo"), None)
            .unwrap();
        let asker = identity::Keypair::generate_ed25519().public().to_peer_id();

        let answer = handle_request(
            asker,
            None,
            Message::Discover {
                namespace: None,
                cookie: None,
                limit: None,
            },
            &mut registrations,
        );

        assert!(matches!(
            answer,
            Some((
                Event::DiscoverNotServed {
                    error: ErrorCode::InvalidNamespace,
                    ..
                },
                Some(Message::DiscoverResponse(Err(ErrorCode::InvalidNamespace)))
            ))
        ));
    }

    #[test]
    fn a_discover_limit_above_the_maximum_is_clamped() {
        let mut registrations =
            Registrations::with_config(Config::default().with_max_discover_limit(3));
        for _ in 0..5 {
            registrations
                .add(new_dummy_registration("foo"), None)
                .unwrap();
        }
        let foo = || Some(Namespace::from_static("foo"));

        let (found, _) = registrations.get(foo(), None, Some(10_000)).unwrap();
        assert_eq!(found.count(), 3);
        let (found, _) = registrations.get(foo(), None, None).unwrap();
        assert_eq!(found.count(), 3);
        let (found, _) = registrations.get(foo(), None, Some(2)).unwrap();
        assert_eq!(found.count(), 2);
    }

    #[test]
    fn a_reregistration_replaces_the_old_one_in_memory_too() {
        let alice = identity::Keypair::generate_ed25519();
        let mut registrations =
            Registrations::with_config(Config::default().with_max_registration_per_peer(1));
        for _ in 0..10 {
            registrations
                .add(new_registration("foo", alice.clone(), None), None)
                .unwrap();
        }

        assert_eq!(registrations.registrations.len(), 1);
        assert_eq!(registrations.expiries.len(), 1);
        assert_eq!(registrations.per_peer.len(), 1);
    }

    #[test]
    fn the_total_is_never_exceeded() {
        let mut registrations =
            Registrations::with_config(Config::default().with_max_registration_total(2));
        registrations
            .add(new_dummy_registration("foo"), None)
            .unwrap();
        registrations
            .add(new_dummy_registration("foo"), None)
            .unwrap();

        assert_eq!(
            registrations.add(new_dummy_registration("foo"), None),
            Err(ErrorCode::Unavailable)
        );
    }

    #[test]
    fn registrations_from_one_address_block_are_capped() {
        let mut registrations =
            Registrations::with_config(Config::default().with_max_registrations_per_ip(2));
        let home = IpBlock::of("2001:db8:1:aaaa::1".parse().unwrap());
        let same_48 = IpBlock::of("2001:db8:1:bbbb::2".parse().unwrap());
        let elsewhere = IpBlock::of("192.0.2.1".parse().unwrap());

        registrations
            .add(new_dummy_registration("foo"), Some(home))
            .unwrap();
        registrations
            .add(new_dummy_registration("foo"), Some(same_48))
            .unwrap();
        assert_eq!(
            registrations.add(new_dummy_registration("foo"), Some(home)),
            Err(ErrorCode::Unavailable)
        );
        registrations
            .add(new_dummy_registration("foo"), Some(elsewhere))
            .unwrap();
    }

    #[test]
    fn an_ipv4_mapped_address_is_its_ipv4_block() {
        assert_eq!(
            IpBlock::of("::ffff:192.0.2.1".parse().unwrap()),
            IpBlock::of("192.0.2.1".parse().unwrap())
        );
        assert_ne!(
            IpBlock::of("192.0.2.1".parse().unwrap()),
            IpBlock::of("192.0.2.2".parse().unwrap())
        );
    }

    #[test]
    fn a_disconnected_peer_loses_every_registration() {
        let alice = identity::Keypair::generate_ed25519();
        let mut registrations = Registrations::default();
        registrations
            .add(new_registration("foo", alice.clone(), None), None)
            .unwrap();
        registrations
            .add(new_registration("bar", alice.clone(), None), None)
            .unwrap();
        registrations
            .add(new_dummy_registration("foo"), None)
            .unwrap();
        let _ = registrations
            .get(Some(Namespace::from_static("foo")), None, None)
            .unwrap();

        assert_eq!(registrations.remove_peer(alice.public().to_peer_id()), 2);
        let (found, _) = registrations
            .get(Some(Namespace::from_static("foo")), None, None)
            .unwrap();
        assert_eq!(found.count(), 1);
        assert_eq!(registrations.expiries.len(), 1);
    }

    #[test]
    fn cookies_stay_within_their_count_and_the_ids_they_hold() {
        let mut registrations = Registrations::with_config(
            Config::default()
                .with_max_stored_cookies(4)
                .with_max_cookie_ids(10),
        );
        for _ in 0..3 {
            registrations
                .add(new_dummy_registration("foo"), None)
                .unwrap();
        }
        for _ in 0..100 {
            let _ = registrations
                .get(Some(Namespace::from_static("foo")), None, None)
                .unwrap();
            assert!(registrations.cookies.len() <= 4);
            assert!(registrations.cookie_ids <= 10);
        }
        let held: usize = registrations.cookies.iter().map(|(_, ids)| ids.len()).sum();
        assert_eq!(held, registrations.cookie_ids);
    }

    #[test]
    fn paging_with_a_cookie_keeps_one_cookie() {
        let mut registrations = Registrations::default();
        for _ in 0..5 {
            registrations
                .add(new_dummy_registration("foo"), None)
                .unwrap();
        }
        let foo = || Some(Namespace::from_static("foo"));
        let (page, mut cookie) = registrations.get(foo(), None, Some(1)).unwrap();
        assert_eq!(page.count(), 1);
        for _ in 0..4 {
            let (page, next) = registrations.get(foo(), Some(cookie), Some(1)).unwrap();
            assert_eq!(page.count(), 1);
            cookie = next;
        }
        assert_eq!(registrations.cookies.len(), 1);
        assert_eq!(registrations.cookie_ids, 5);
    }

    fn new_dummy_registration(namespace: &'static str) -> NewRegistration {
        let identity = identity::Keypair::generate_ed25519();

        new_registration(namespace, identity, None)
    }

    fn new_dummy_registration_with_ttl(namespace: &'static str, ttl: Ttl) -> NewRegistration {
        let identity = identity::Keypair::generate_ed25519();

        new_registration(namespace, identity, Some(ttl))
    }

    fn new_registration(
        namespace: &'static str,
        identity: identity::Keypair,
        ttl: Option<Ttl>,
    ) -> NewRegistration {
        NewRegistration::new(
            Namespace::from_static(namespace),
            PeerRecord::new(&identity, vec!["/ip4/127.0.0.1/tcp/1234".parse().unwrap()]).unwrap(),
            ttl,
        )
    }

    /// Defines utility functions that make the tests more readable.
    impl Registrations {
        async fn next_event(&mut self) -> ExpiredRegistration {
            futures::future::poll_fn(|cx| self.poll(cx)).await
        }

        /// Polls [`Registrations`] for `seconds` and panics if it returns a event during this time.
        async fn no_event_for(&mut self, seconds: u64) {
            tokio::time::timeout(Duration::from_secs(seconds), self.next_event())
                .await
                .unwrap_err();
        }

        /// Polls [`Registrations`] for at most `seconds` and panics if doesn't
        /// return an event within that time.
        async fn next_event_in_at_most(&mut self, seconds: u64) -> ExpiredRegistration {
            tokio::time::timeout(Duration::from_secs(seconds), self.next_event())
                .await
                .unwrap()
        }
    }
}
