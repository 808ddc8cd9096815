#!/usr/bin/env python3
"""A deliberately slow streaming client: a tiny receive buffer, one byte read
every INTERVAL seconds for DURATION seconds. Prints 'ready' once the response
has started and 'read N' at the end. Usage: slow_reader.py PORT KEY BODY INTERVAL DURATION"""
import socket
import sys
import time

port, key, body = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
interval, duration = float(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# Set before connect so the advertised window stays small: the kernel cannot soak up the stream for us.
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() +
          b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
print("ready", flush=True)
got = 0
end = time.monotonic() + duration
while time.monotonic() < end:
    got += len(s.recv(1))
    time.sleep(interval)
print("read", got, flush=True)
s.close()
