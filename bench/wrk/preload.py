"""Writes k0..k9999 once (100 B each) over 16 connections, so that no read of a benchmark meets a missing key.

    python3 bench/wrk/preload.py http://127.0.0.1:PORT
"""
import http.client
import sys
import threading

host, port = sys.argv[1].removeprefix("http://").split(":")
value, failed = b"v" * 100, []


def worker(first):
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    for i in range(first, 10000, 16):
        for _ in range(5):
            conn.request("PUT", f"/v1/kv/k{i}", value)
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                break
        else:
            failed.append(i)


threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if failed:
    sys.exit(f"preload: {len(failed)} keys not written")
