#!/usr/bin/env bash
# Writes the seed corpora under fuzz/corpus/ from the repository's own fixtures (the
# validation fixtures, the bundled desired state, the HL7 crate's messages) and from
# throwaway certificates made here with openssl. Seeds are named by their SHA-1, as
# libFuzzer names what it adds. Run from anywhere; re-running adds nothing already there.
# The pem_pfx and agent_request seeds hold throwaway test keys made for the fuzzer only.
set -euo pipefail
cd "$(dirname "$0")"
corpus=corpus

seed() { # seed TARGET < bytes
  local tmp sum
  tmp=$(mktemp)
  cat > "$tmp"
  sum=$(sha1sum "$tmp" | cut -c1-40)
  mkdir -p "$corpus/$1"
  mv "$tmp" "$corpus/$1/$sum"
}

# desired_state_yaml: every validation fixture (break and near miss) under 64 KiB, and
# the bundled example's files.
for f in ../crates/model/tests/fixtures/*/*.yaml ../desired-state/*.yaml ../desired-state/*/*.yaml; do
  [ "$(stat -c %s "$f")" -le 65536 ] && seed desired_state_yaml < "$f"
done

# desired_state_tree: arbitrary-encoded trees; byte 1 = "start from the bundled example".
printf '\x01' | seed desired_state_tree
printf '\x00' | seed desired_state_tree

# hl7_mllp: first byte = read size - 1, then MLLP frames.
frame() { printf '\x0b%s\x1c\r' "$1"; }
adt='MSH|^~\&|EPIC|HOSP|PSECURE|PS|20240101120000||ADT^A01^ADT_A01|MSG00001|P|2.5.1\rEVN|A01|20240101120000\rPID|1||12345^^^HOSP^MR||DOE^JOHN\r'
probe='MSH|^~\&|STEWARD|STEWARD|PSECURE|PS|20240101120000||QRY^Q01|S0001|P|2.5\r'
{ printf '\x00'; frame "$(printf "$adt")"; } | seed hl7_mllp
{ printf '\x03'; frame "$(printf "$probe")"; frame "$(printf "$adt")"; } | seed hl7_mllp
{ printf '\xff'; printf '\r\n'; frame "$(printf 'MSH|^~\\&|A|B|C|D|||ADT^A01|42|P|2.5\rnot a segment')"; } | seed hl7_mllp
{ printf '\x10'; frame "$(printf 'MSH|^~\\&|A|B|C|D|||ADT^A01||P|2.5')"; } | seed hl7_mllp
{ printf '\x01'; printf '\x0bMSH|'; } | seed hl7_mllp

# Throwaway PKI: a CA, a leaf for app1.example.eng, PFX files (modern and legacy).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500 \
  -subj /CN=fuzz-ca -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=app1.example.eng \
  -keyout "$work/leaf.key" -out "$work/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:app1.example.eng,DNS:ps.example.eng\nextendedKeyUsage=serverAuth\n' > "$work/ext"
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -days 36500 \
  -extfile "$work/ext" -out "$work/leaf.pem" 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in "$work/leaf.key" -out "$work/leaf.p8" 2>/dev/null
password=fuzz-pfx-Password-7 # PASSWORD in fuzz_targets/pem_pfx.rs
openssl pkcs12 -export -inkey "$work/leaf.p8" -in "$work/leaf.pem" -certfile "$work/ca.pem" \
  -passout "pass:$password" -out "$work/modern.pfx"
openssl pkcs12 -export -legacy -inkey "$work/leaf.p8" -in "$work/leaf.pem" \
  -passout "pass:$password" -out "$work/legacy.pfx" 2>/dev/null || true
openssl pkcs12 -export -inkey "$work/leaf.p8" -in "$work/leaf.pem" -passout pass: -out "$work/empty.pfx"
# pem_pfx: reader byte, then input (PEM pairs: certificate NUL key).
{ printf '\x00'; cat "$work/leaf.pem" "$work/ca.pem"; printf '\0'; cat "$work/leaf.p8"; } | seed pem_pfx
{ printf '\x01'; cat "$work/leaf.pem" "$work/ca.pem"; printf '\0'; cat "$work/leaf.p8"; } | seed pem_pfx
{ printf '\x04'; cat "$work/ca.pem"; printf '\0'; cat "$work/leaf.key"; } | seed pem_pfx
{ printf '\x02'; cat "$work/modern.pfx"; } | seed pem_pfx
[ -s "$work/legacy.pfx" ] && { printf '\x02'; cat "$work/legacy.pfx"; } | seed pem_pfx
{ printf '\x03'; cat "$work/empty.pfx"; } | seed pem_pfx

# agent_request: route byte (0/1 + 4*kind index: install; 2: certificate; 3: connection
# strings), then the body as the daemon's client sends it.
{ printf '\x00'; printf '{"ports":[7001],"drive":"C:","release":"2024.1.0","installedBy":"steward"}'; } | seed agent_request
{ printf '\x10'; printf '{"ports":[443,80],"release":"2024.1.0","installedBy":"steward"}'; } | seed agent_request
{ printf '\x14'; printf '{"ports":[7005,7006],"drive":"d:","release":"2024.1+hf1","installedBy":"steward on ops1"}'; } | seed agent_request
{ printf '\x03'; printf '{"identityServer":"https://app1.example.eng:7001","psws":"https://app1.example.eng:7002","client":"https://app1.example.eng:7003","api":"https://app1.example.eng:7004"}'; } | seed agent_request
python3 - "$work/leaf.pem" "$work/leaf.p8" <<'PY' | seed agent_request
import json, sys
cert, key = (open(p).read() for p in sys.argv[1:3])
sys.stdout.write("\x02" + json.dumps({"certPem": cert, "keyPem": key}))
PY
