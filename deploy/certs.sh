#!/usr/bin/env bash
# Makes Seal's private CA and every leaf certificate a production layout needs,
# with openssl: ECDSA P-256 keys (mode 0600), SANs, key usages and extended key
# usages as each side checks them (see deploy/README.md, "Certificates").
#
#   deploy/certs.sh [--force] [--out DIR] [--config FILE]
#                   [--node NAME=HOST[,HOST...]]... [--signer NAME=HOST[,HOST...]]...
#                   [--public-name HOST]... [--admin NAME]
#
# Names and hosts come from the arguments, else from the environment, else from
# a config file of shell defaults (--config, default deploy/certs.env beside this
# script, written as : "${SEAL_NODES:=...}" so that the environment wins):
#
#   SEAL_CERTS_OUT     output directory (default /etc/seal/tls)
#   SEAL_NODES         space-separated NAME=HOST[,HOST...]: one per seal-node
#   SEAL_SIGNERS       the same, one per seal-signer
#   SEAL_PUBLIC_NAMES  comma-separated extra SANs of every node's HTTPS
#                      certificate (the name clients use, e.g. a load balancer's)
#   SEAL_ADMIN_NAME    the operators' certificate name (default seal-admin)
#   SEAL_CA_NAME       the CA's common name (default "Seal CA")
#   SEAL_CERT_DAYS     leaf lifetime in days (default 397); the CA gets 3650
#
# NAME becomes the certificate's CN and first DNS SAN: it is what the
# allow-lists match (raft.allowed_peer_names, the signer's
# allowed_client_names, admin_client_names and peers[].name). HOSTs are the
# names and IP addresses peers connect to.
#
# Idempotent: an existing key is never replaced, and an existing certificate is
# kept, unless --force is given (then everything is made anew, CA included).
# A missing certificate whose key exists is issued for that key.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit 0
}

die() {
  echo "certs.sh: $*" >&2
  exit 1
}

here=$(cd "$(dirname "$0")" && pwd)
force=0
config=""
arg_nodes=()
arg_signers=()
arg_public=()
arg_out=""
arg_admin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; arg_out=$2; shift ;;
    --config) [ $# -ge 2 ] || die "--config needs a file"; config=$2; shift ;;
    --node) [ $# -ge 2 ] || die "--node needs NAME=HOST[,HOST...]"; arg_nodes+=("$2"); shift ;;
    --signer) [ $# -ge 2 ] || die "--signer needs NAME=HOST[,HOST...]"; arg_signers+=("$2"); shift ;;
    --public-name) [ $# -ge 2 ] || die "--public-name needs a host name"; arg_public+=("$2"); shift ;;
    --admin) [ $# -ge 2 ] || die "--admin needs a name"; arg_admin=$2; shift ;;
    -h|--help) usage ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

if [ -n "$config" ]; then
  [ -f "$config" ] || die "config file $config does not exist"
  # shellcheck disable=SC1090
  . "$config"
elif [ -f "$here/certs.env" ]; then
  # shellcheck disable=SC1091
  . "$here/certs.env"
fi

out=${arg_out:-${SEAL_CERTS_OUT:-/etc/seal/tls}}
admin=${arg_admin:-${SEAL_ADMIN_NAME:-seal-admin}}
ca_name=${SEAL_CA_NAME:-Seal CA}
days=${SEAL_CERT_DAYS:-397}
if [ ${#arg_nodes[@]} -gt 0 ]; then nodes=("${arg_nodes[@]}"); else read -r -a nodes <<<"${SEAL_NODES:-}"; fi
if [ ${#arg_signers[@]} -gt 0 ]; then signers=("${arg_signers[@]}"); else read -r -a signers <<<"${SEAL_SIGNERS:-}"; fi
if [ ${#arg_public[@]} -gt 0 ]; then public=$(IFS=,; echo "${arg_public[*]}"); else public=${SEAL_PUBLIC_NAMES:-}; fi

[ ${#nodes[@]} -gt 0 ] || die "no nodes: give --node NAME=HOST or SEAL_NODES"
[ ${#signers[@]} -gt 0 ] || die "no signers: give --signer NAME=HOST or SEAL_SIGNERS"
[[ "$days" =~ ^[1-9][0-9]*$ ]] || die "SEAL_CERT_DAYS must be a positive number of days, not '$days'"
command -v openssl >/dev/null || die "openssl is not installed"

name_ok() { [[ "$1" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; }
host_ok() { [[ "$1" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ || "$1" =~ ^[0-9a-fA-F:.]+$ ]]; }
name_ok "$admin" || die "admin name '$admin' is not a DNS name"
for entry in "${nodes[@]}" "${signers[@]}"; do
  [[ "$entry" == *=* ]] || die "'$entry' is not NAME=HOST[,HOST...]"
  name_ok "${entry%%=*}" || die "'${entry%%=*}' (in '$entry') is not a DNS name"
  IFS=, read -r -a hs <<<"${entry#*=}"
  [ ${#hs[@]} -gt 0 ] || die "'$entry' names no host"
  for h in "${hs[@]}"; do host_ok "$h" || die "'$h' (in '$entry') is not a host name or IP address"; done
done
if [ -n "$public" ]; then
  IFS=, read -r -a hs <<<"$public"
  for h in "${hs[@]}"; do host_ok "$h" || die "public name '$h' is not a host name or IP address"; done
fi

mkdir -p "$out"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# subjectAltName value for a name and comma-separated hosts (IP: for addresses).
sans() {
  local name=$1 hosts=$2 list="DNS:$1" h
  IFS=, read -r -a hs <<<"$hosts"
  for h in "${hs[@]}"; do
    [ -n "$h" ] && [ "$h" != "$name" ] || continue
    if [[ "$h" =~ ^[0-9.]+$ || "$h" == *:* ]]; then list+=",IP:$h"; else list+=",DNS:$h"; fi
  done
  echo "$list"
}

# A P-256 key at $1, unless one is there (and no --force).
make_key() {
  local key=$1
  if [ -f "$key" ] && [ "$force" -eq 0 ]; then
    return 0
  fi
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key.tmp" 2>/dev/null
  chmod 600 "$key.tmp"
  mv -f "$key.tmp" "$key"
  made+=("$key")
}

made=()
kept=()

# The CA.
ca_key="$out/ca.key"
ca_crt="$out/ca.crt"
if [ "$force" -eq 1 ] || [ ! -f "$ca_crt" ] || [ ! -f "$ca_key" ]; then
  if [ -f "$ca_crt" ] && [ ! -f "$ca_key" ] && [ "$force" -eq 0 ]; then
    die "$ca_crt exists without $ca_key: cannot sign new leaves (restore the key, or --force)"
  fi
  make_key "$ca_key"
  cat >"$work/ca.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = $ca_name
[v3_ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
EOF
  if [ "$force" -eq 1 ] || [ ! -f "$ca_crt" ]; then
    openssl req -x509 -new -key "$ca_key" -config "$work/ca.cnf" -days 3650 -sha256 \
      -set_serial "0x$(openssl rand -hex 16)" -out "$ca_crt.tmp"
    chmod 644 "$ca_crt.tmp"
    mv -f "$ca_crt.tmp" "$ca_crt"
    made+=("$ca_crt")
  fi
else
  kept+=("$ca_crt")
fi

# leaf FILE-STEM CN SANS EKU: a key and a certificate signed by the CA.
leaf() {
  local stem=$1 cn=$2 san=$3 eku=$4
  local key="$out/$stem.key" crt="$out/$stem.crt"
  make_key "$key"
  if [ -f "$crt" ] && [ "$force" -eq 0 ]; then
    kept+=("$crt")
    return 0
  fi
  cat >"$work/$stem.cnf" <<EOF
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = $eku
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
EOF
  openssl req -new -key "$key" -subj "/CN=$cn" -out "$work/$stem.csr"
  openssl x509 -req -in "$work/$stem.csr" -CA "$ca_crt" -CAkey "$ca_key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
    -extfile "$work/$stem.cnf" -extensions leaf -out "$crt.tmp" 2>/dev/null
  chmod 644 "$crt.tmp"
  mv -f "$crt.tmp" "$crt"
  made+=("$crt")
}

for entry in "${nodes[@]}"; do
  name=${entry%%=*}
  hosts=${entry#*=}
  https_hosts=$hosts
  [ -z "$public" ] || https_hosts="$hosts,$public"
  # HTTPS for clients (server.tls_cert_file).
  leaf "$name-https" "$name" "$(sans "$name" "$https_hosts")" serverAuth
  # Raft, cluster admin and forwarding: server and client (raft.tls_cert_file).
  leaf "$name-raft" "$name" "$(sans "$name" "$hosts")" serverAuth,clientAuth
  # The node as the signers' client (trust_service.tls_client_cert).
  leaf "$name-signer-client" "$name" "DNS:$name" clientAuth
done
for entry in "${signers[@]}"; do
  name=${entry%%=*}
  hosts=${entry#*=}
  # The signer's gRPC server, and its client certificate towards its
  # threshold peers (they call each other with tls_cert_file).
  leaf "$name" "$name" "$(sans "$name" "$hosts")" serverAuth,clientAuth
done
# Operators: seal-node cluster … (raft.allowed_peer_names) and signer
# key deletion (server.admin_client_names).
leaf admin "$admin" "DNS:$admin" clientAuth

for f in "${made[@]}"; do echo "made $f"; done
for f in "${kept[@]}"; do echo "kept $f"; done
