#!/usr/bin/env bash
# tools/fake1688/bench.sh — throughput of fake1688 with wrk (Debian package wrk).
#
#   tools/fake1688/bench.sh [BIN] [SECONDS] [CONNECTIONS]
#
# Starts a private fake on free loopback ports, loads one product, and runs
# wrk against signed alibaba.product.get and alibaba.createOrder.preview
# calls (every request is signature-checked). Prints requests/s per API and
# stops the fake by pid. Bounded: each run lasts SECONDS (default 5).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${1:-$root/build/tools/fake1688/fake1688}
secs=${2:-5}
conns=${3:-32}
[ -x "$bin" ] || { echo "bench: no fake1688 at $bin (ninja -C build tools/fake1688/fake1688)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "bench: wrk not installed (apt-get install wrk)" >&2; exit 2; }
[[ $secs =~ ^[0-9]+$ ]] && [ "$secs" -ge 1 ] && [ "$secs" -le 120 ] || { echo "bench: SECONDS 1..120" >&2; exit 2; }

dir=$(mktemp -d)
"$bin" --port 0 --control-port 0 --port-file "$dir/ports" --quiet >"$dir/log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do [ -s "$dir/ports" ] && break; sleep 0.1; done
read -r api_port ctl_port <"$dir/ports"

curl -sf -XPOST "http://127.0.0.1:$ctl_port/catalogue" -d '{"products":[{"offer_id":600000000001,
  "skus":[{"sku_id":5000000000001,"spec_id":"0123456789abcdef0123456789abcdef","price":8.5,
  "real":1000000,"attributes":[{"attributeID":3216,"attributeValue":"red"}]}]}]}' >/dev/null

script() {
    /usr/bin/python3 - "$@" <<'EOF'
import hashlib, hmac, json, sys, urllib.parse
ns, api = sys.argv[1], sys.argv[2]
path = "param2/1/%s/%s/1000000" % (ns, api)
p = {"access_token": "TESTTOKEN", "_aop_timestamp": "1700000000000"}
if api == "alibaba.product.get":
    p.update(productID="600000000001", webSite="1688")
else:
    p.update(addressParam='{"addressId":1}', cargoParamList=json.dumps(
        [{"offerId": 600000000001, "specId": "0123456789abcdef0123456789abcdef", "quantity": 2}]))
s = path + "".join(sorted(k + v for k, v in p.items()))
p["_aop_signature"] = hmac.new(b"test123", s.encode(), hashlib.sha1).hexdigest().upper()
print('wrk.method = "POST"\nwrk.path = "/openapi/%s"\nwrk.body = "%s"' % (path, urllib.parse.urlencode(p)))
print('wrk.headers["Content-Type"] = "application/x-www-form-urlencoded; charset=UTF-8"')
print('done = function(s, l, r) io.write(string.format("non2xx=%d errors=%d\\n", '
      's.errors.status, s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout)) end')
EOF
}

for api in "com.alibaba.product alibaba.product.get" "com.alibaba.trade alibaba.createOrder.preview"; do
    # shellcheck disable=SC2086
    script $api >"$dir/s.lua"
    out=$(wrk -t1 -c"$conns" -d"${secs}s" -s "$dir/s.lua" "http://127.0.0.1:$api_port" 2>&1)
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    lat=$(awk '/Latency/ {print $2; exit}' <<<"$out")
    bad=$(grep -o 'non2xx=[0-9]* errors=[0-9]*' <<<"$out")
    echo "${api#* }: $rps requests/s, mean latency $lat, $bad ($conns connections, ${secs}s)"
done
