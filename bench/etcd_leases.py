"""Grant N etcd leases (TTL 600 s) through the gRPC gateway and print their ids, one a line.

python bench/etcd_leases.py http://127.0.0.1:23790 10000 > leases.rows
"""

from __future__ import annotations

import http.client
import json
import sys
from urllib.parse import urlsplit


def main() -> None:
    url, count = urlsplit(sys.argv[1]), int(sys.argv[2])
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    for _ in range(count):
        conn.request("POST", "/v3/lease/grant", body='{"TTL": 600}')
        reply = json.loads(conn.getresponse().read())
        print(reply["ID"])


if __name__ == "__main__":
    main()
