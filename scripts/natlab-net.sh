# shellcheck shell=bash
#
# natlab-net.sh: a NAT lab built out of Linux network namespaces.
#
# Source this file (do not execute it), then call natlab_up / natlab_down.
# Needs root, iproute2 (`ip`) and iptables; no `tc`. Everything stays inside
# the namespaces it creates: nothing is attached to the machine's own network,
# and only private addresses are used.
#
# Topology (namespace names are "$NATLAB_PREFIX-<short name>"):
#
#              inet: bridge br0, the "public internet" 10.99.0.0/24
#             /                  |                   \
#   relay 10.99.0.10      rA wan 10.99.0.1      rB wan 10.99.0.2
#                         rA lan 192.168.1.1    rB lan 192.168.2.1
#                                |                     |
#                         hA 192.168.1.2        hB 192.168.2.2
#
# - rA and rB are NAT routers: ip_forward on, MASQUERADE from their LAN out of
#   their WAN (port-preserving "cone" style by default, `--random-fully`, i.e.
#   symmetric, when asked), FORWARD policy DROP except LAN->WAN and
#   ESTABLISHED,RELATED back in, and INPUT from the WAN silently dropped unless
#   ESTABLISHED,RELATED (like a home router).
# - hA and hB have one route: default via their router.
# - Nothing on the public side (relay, routers, inet) has a route into either
#   LAN.
# - IPv6 is disabled in every lab namespace: the filter rules are IPv4-only,
#   and IPv6 link-local addresses on the public segment would otherwise be an
#   unfiltered path to the routers.
#
# Every veth is created directly inside the lab namespaces (never in the
# machine's own namespace), so interface names only have to be unique within
# one namespace, and deleting the namespaces deletes the veths. The prefix
# keeps parallel runs apart: each run's namespaces have different names, and
# the same addresses can be reused because each lab is its own little world.
#
# Environment (read when this file is sourced):
#   NATLAB_PREFIX     namespace name prefix; default "pl<pid of the shell>"
#   NATLAB_RP_FILTER  rp_filter value for every lab namespace; default 1
#                     (strict), so the result does not depend on the host's
#                     own sysctl defaults

# ---------------------------------------------------------------------------
# Configuration and exported addresses
# ---------------------------------------------------------------------------

: "${NATLAB_PREFIX:=pl$$}"
: "${NATLAB_RP_FILTER:=1}"

# The public segment, the relay and the routers' WAN addresses.
NATLAB_NET=10.99.0.0/24
NATLAB_RELAY_IP=10.99.0.10
NATLAB_RA_WAN=10.99.0.1
NATLAB_RB_WAN=10.99.0.2
# The two LANs: router .1, host .2.
NATLAB_LAN_A=192.168.1.0/24
NATLAB_LAN_B=192.168.2.0/24
NATLAB_RA_LAN=192.168.1.1
NATLAB_RB_LAN=192.168.2.1
NATLAB_HA_IP=192.168.1.2
NATLAB_HB_IP=192.168.2.2
# NAT behaviour of each router, set by natlab_up: "cone" or "symmetric".
NATLAB_NAT_A=cone
NATLAB_NAT_B=cone

export NATLAB_PREFIX NATLAB_RP_FILTER NATLAB_NET NATLAB_RELAY_IP \
  NATLAB_RA_WAN NATLAB_RB_WAN NATLAB_LAN_A NATLAB_LAN_B NATLAB_RA_LAN \
  NATLAB_RB_LAN NATLAB_HA_IP NATLAB_HB_IP NATLAB_NAT_A NATLAB_NAT_B

# Short names of the lab namespaces, in creation order.
_NATLAB_SHORT=(inet relay rA rB hA hB)

# ---------------------------------------------------------------------------
# Helpers (internal)
# ---------------------------------------------------------------------------

# _natlab_err MSG...: print an error on stderr.
_natlab_err() {
  echo "natlab: $*" >&2
}

# _natlab_do CMD...: run CMD; on failure, say which command failed and
# return its status. Used instead of `set -e`, which a sourced library must
# not impose on (and cannot rely on in) its caller.
_natlab_do() {
  "$@" && return 0
  local rc=$?
  _natlab_err "failed (exit $rc): $*"
  return "$rc"
}

# _natlab_nsx SHORT CMD...: run CMD inside lab namespace SHORT, reporting
# failures like _natlab_do.
_natlab_nsx() {
  local ns
  ns=$(natlab_ns "$1") || return 1
  shift
  _natlab_do ip netns exec "$ns" "$@"
}

# _natlab_veth NS1 IF1 NS2 IF2: create a veth pair with one end IF1 in lab
# namespace NS1 and the other end IF2 in NS2, both created in place.
_natlab_veth() {
  _natlab_do ip link add name "$2" netns "$(natlab_ns "$1")" type veth \
    peer name "$4" netns "$(natlab_ns "$3")"
}

# _natlab_router SHORT LAN_CIDR SYMMETRIC(0|1): configure NAT and filtering
# in router namespace SHORT, whose interfaces are "wan" and "lan".
_natlab_router() {
  local r=$1 lan=$2 symmetric=$3
  local masq=(-j MASQUERADE)
  [ "$symmetric" = 1 ] && masq+=(--random-fully)
  _natlab_nsx "$r" sysctl -qw net.ipv4.ip_forward=1 || return 1
  # Source NAT for the LAN, out of the WAN only.
  _natlab_nsx "$r" iptables -t nat -A POSTROUTING -s "$lan" -o wan "${masq[@]}" || return 1
  # Forwarding: LAN->WAN allowed; WAN->LAN only for replies (and related
  # ICMP errors); everything else dropped.
  _natlab_nsx "$r" iptables -P FORWARD DROP || return 1
  _natlab_nsx "$r" iptables -A FORWARD -i lan -o wan -j ACCEPT || return 1
  _natlab_nsx "$r" iptables -A FORWARD -i wan -o lan \
    -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT || return 1
  # The router itself: unsolicited packets from the WAN are dropped silently
  # (DROP, not REJECT: no RST, no ICMP port unreachable), like a home router.
  # This also matters for UDP hole punching: a dropped packet never gets a
  # confirmed conntrack entry. Without this DROP, the peer's first punch
  # (arriving before our own) is delivered to the router itself and leaves
  # an entry for that 4-tuple; our outgoing punch then clashes with it and
  # MASQUERADE gives it a different public port, so the punch fails (6 of 8
  # tries in a test) even between two cone NATs.
  _natlab_nsx "$r" iptables -A INPUT -i wan \
    -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT || return 1
  _natlab_nsx "$r" iptables -A INPUT -i wan -j DROP || return 1
}

# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------

# natlab_ns SHORT: print the full namespace name of lab namespace SHORT
# (inet|relay|rA|rB|hA|hB). Fails on an unknown short name.
natlab_ns() {
  case "${1:-}" in
    inet | relay | rA | rB | hA | hB) echo "$NATLAB_PREFIX-$1" ;;
    *)
      _natlab_err "unknown namespace '${1:-}' (want inet|relay|rA|rB|hA|hB)"
      return 1
      ;;
  esac
}

# natlab_namespaces: print the full names of all of this run's lab
# namespaces, one per line (whether or not they exist).
natlab_namespaces() {
  local s
  for s in "${_NATLAB_SHORT[@]}"; do
    echo "$NATLAB_PREFIX-$s"
  done
}

# natlab_exec SHORT CMD...: run CMD inside lab namespace SHORT
# (relay|hA|hB|rA|rB, or inet for the bridge namespace). Returns CMD's status.
natlab_exec() {
  local ns
  ns=$(natlab_ns "${1:-}") || return 1
  shift
  if [ $# -eq 0 ]; then
    _natlab_err "natlab_exec: no command given"
    return 1
  fi
  ip netns exec "$ns" "$@"
}

# natlab_check_deps [CMD...]: check that the lab can be built here: root,
# `ip` with netns support, iptables, the kernel features used (veth, bridge,
# conntrack, MASQUERADE --random-fully), plus any extra commands named as
# arguments (e.g. python3). Prints every missing piece and how to get it;
# returns 0 when nothing is missing, 1 otherwise.
natlab_check_deps() {
  local missing=0 c probe
  if [ "$(id -u)" -ne 0 ]; then
    _natlab_err "missing: root privileges (network namespaces need root; run with sudo)"
    missing=1
  fi
  if ! command -v ip >/dev/null 2>&1; then
    _natlab_err "missing: ip (install: apt-get install -y iproute2)"
    missing=1
  fi
  if ! command -v iptables >/dev/null 2>&1; then
    _natlab_err "missing: iptables (install: apt-get install -y iptables)"
    missing=1
  fi
  for c in "$@"; do
    if ! command -v "$c" >/dev/null 2>&1; then
      _natlab_err "missing: $c (install it, e.g. apt-get install -y $c)"
      missing=1
    fi
  done
  [ "$missing" = 0 ] || return 1

  # Probe the kernel features in a throwaway namespace.
  probe="$NATLAB_PREFIX-probe"
  if ! ip netns add "$probe" 2>/dev/null; then
    _natlab_err "missing: network namespace support ('ip netns add' failed)"
    return 1
  fi
  if ! ip -n "$probe" link add br0 type bridge 2>/dev/null; then
    _natlab_err "missing: kernel bridge support (module 'bridge')"
    missing=1
  fi
  if ! ip -n "$probe" link add v0 type veth peer name v1 2>/dev/null; then
    _natlab_err "missing: kernel veth support (module 'veth')"
    missing=1
  fi
  if ! ip netns exec "$probe" iptables -A INPUT \
    -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT 2>/dev/null; then
    _natlab_err "missing: iptables conntrack match (kernel nf_conntrack / xt_conntrack)"
    missing=1
  fi
  if ! ip netns exec "$probe" iptables -t nat -A POSTROUTING \
    -j MASQUERADE --random-fully 2>/dev/null; then
    _natlab_err "missing: iptables nat MASQUERADE --random-fully (kernel nf_nat / xt_MASQUERADE)"
    missing=1
  fi
  ip netns del "$probe" 2>/dev/null
  [ "$missing" = 0 ]
}

# natlab_up [--symmetric-a] [--symmetric-b]: build the whole lab. By default
# both routers are port-preserving ("cone") NATs; --symmetric-X makes router
# X use MASQUERADE --random-fully (a new random public port per flow).
# Refuses to run if any of this prefix's namespaces already exists. On
# failure it returns non-zero and leaves what it built: call natlab_down.
natlab_up() {
  local sym_a=0 sym_b=0 arg s ns
  for arg in "$@"; do
    case "$arg" in
      --symmetric-a) sym_a=1 ;;
      --symmetric-b) sym_b=1 ;;
      *)
        _natlab_err "natlab_up: unknown option '$arg'"
        return 1
        ;;
    esac
  done
  if ! [[ "$NATLAB_PREFIX" =~ ^[A-Za-z0-9_]{1,20}$ ]]; then
    _natlab_err "NATLAB_PREFIX must be 1-20 characters of [A-Za-z0-9_]: '$NATLAB_PREFIX'"
    return 1
  fi
  for s in "${_NATLAB_SHORT[@]}"; do
    if [ -e "/run/netns/$NATLAB_PREFIX-$s" ]; then
      _natlab_err "namespace $NATLAB_PREFIX-$s already exists (stale run? call natlab_down)"
      return 1
    fi
  done

  # Namespaces, each with lo up, IPv6 off, and a known rp_filter.
  for s in "${_NATLAB_SHORT[@]}"; do
    ns="$NATLAB_PREFIX-$s"
    _natlab_do ip netns add "$ns" || return 1
    _natlab_do ip -n "$ns" link set lo up || return 1
    if ip netns exec "$ns" test -d /proc/sys/net/ipv6; then
      _natlab_nsx "$s" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
        net.ipv6.conf.default.disable_ipv6=1 || return 1
    fi
    _natlab_nsx "$s" sysctl -qw net.ipv4.conf.all.rp_filter="$NATLAB_RP_FILTER" \
      net.ipv4.conf.default.rp_filter="$NATLAB_RP_FILTER" || return 1
  done

  # The public segment: a bridge in "inet" with one port per public host.
  ns=$(natlab_ns inet)
  _natlab_do ip -n "$ns" link add br0 type bridge || return 1
  _natlab_do ip -n "$ns" link set br0 up || return 1
  _natlab_veth inet to-relay relay eth0 || return 1
  _natlab_veth inet to-rA rA wan || return 1
  _natlab_veth inet to-rB rB wan || return 1
  for s in to-relay to-rA to-rB; do
    _natlab_do ip -n "$ns" link set "$s" master br0 || return 1
    _natlab_do ip -n "$ns" link set "$s" up || return 1
  done

  # The LAN links: router "lan" <-> host "eth0".
  _natlab_veth rA lan hA eth0 || return 1
  _natlab_veth rB lan hB eth0 || return 1

  # Addresses. Only connected routes exist on the public side, so nothing
  # there can route into a LAN.
  _natlab_do ip -n "$(natlab_ns relay)" addr add "$NATLAB_RELAY_IP/24" dev eth0 || return 1
  _natlab_do ip -n "$(natlab_ns rA)" addr add "$NATLAB_RA_WAN/24" dev wan || return 1
  _natlab_do ip -n "$(natlab_ns rB)" addr add "$NATLAB_RB_WAN/24" dev wan || return 1
  _natlab_do ip -n "$(natlab_ns rA)" addr add "$NATLAB_RA_LAN/24" dev lan || return 1
  _natlab_do ip -n "$(natlab_ns rB)" addr add "$NATLAB_RB_LAN/24" dev lan || return 1
  _natlab_do ip -n "$(natlab_ns hA)" addr add "$NATLAB_HA_IP/24" dev eth0 || return 1
  _natlab_do ip -n "$(natlab_ns hB)" addr add "$NATLAB_HB_IP/24" dev eth0 || return 1
  _natlab_do ip -n "$(natlab_ns relay)" link set eth0 up || return 1
  for s in rA rB; do
    _natlab_do ip -n "$(natlab_ns "$s")" link set wan up || return 1
    _natlab_do ip -n "$(natlab_ns "$s")" link set lan up || return 1
  done
  for s in hA hB; do
    _natlab_do ip -n "$(natlab_ns "$s")" link set eth0 up || return 1
  done

  # Hosts: the default route via their router is their only way out.
  _natlab_do ip -n "$(natlab_ns hA)" route add default via "$NATLAB_RA_LAN" || return 1
  _natlab_do ip -n "$(natlab_ns hB)" route add default via "$NATLAB_RB_LAN" || return 1

  # Routers: NAT and filtering.
  _natlab_router rA "$NATLAB_LAN_A" "$sym_a" || return 1
  _natlab_router rB "$NATLAB_LAN_B" "$sym_b" || return 1
  NATLAB_NAT_A=$([ "$sym_a" = 1 ] && echo symmetric || echo cone)
  NATLAB_NAT_B=$([ "$sym_b" = 1 ] && echo symmetric || echo cone)
  export NATLAB_NAT_A NATLAB_NAT_B
}

# natlab_leftovers: print what of this run still exists (namespaces, and
# links in the machine's own namespace named with the prefix), one per line;
# prints nothing once natlab_down has done its work.
natlab_leftovers() {
  ip netns list 2>/dev/null | awk '{print $1}' |
    grep -Fx -f <(natlab_namespaces; echo "$NATLAB_PREFIX-probe")
  _natlab_root_links
  return 0
}

# _natlab_root_links: links in the machine's own namespace whose name starts
# with this run's prefix (followed by a non-word character or the end).
_natlab_root_links() {
  ip -o link show 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print $2}' |
    grep -E "^${NATLAB_PREFIX}([^A-Za-z0-9_]|$)"
}

# natlab_down: remove everything this run (this NATLAB_PREFIX) created:
# kill the processes still running inside the lab namespaces (they would
# keep a deleted namespace, and its veths, alive), delete the namespaces
# (which deletes their veths and the bridge), and delete any link in the
# machine's own namespace named with the prefix (none is ever created there;
# this is a safety net). Idempotent; always returns 0.
natlab_down() {
  local ns pids=() p link
  # Processes first, in every namespace, so none can keep a namespace alive.
  for ns in $(natlab_namespaces); do
    [ -e "/run/netns/$ns" ] || continue
    while read -r p; do
      [ -n "$p" ] && pids+=("$p")
    done < <(ip netns pids "$ns" 2>/dev/null)
  done
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null
    # Give them up to ~1 s to exit, then force.
    for _ in $(seq 1 20); do
      for p in "${pids[@]}"; do
        kill -0 "$p" 2>/dev/null && break
        p=""
      done
      [ -z "$p" ] && break
      sleep 0.05
    done
    kill -KILL "${pids[@]}" 2>/dev/null
  fi
  for ns in $(natlab_namespaces) "$NATLAB_PREFIX-probe"; do
    [ -e "/run/netns/$ns" ] && ip netns del "$ns" 2>/dev/null
  done
  # Safety net: links in the root namespace carrying this run's prefix.
  while read -r link; do
    [ -n "$link" ] && ip link del "$link" 2>/dev/null
  done < <(_natlab_root_links)
  return 0
}
