import { spawnSync } from 'child_process';

/**
 * Optional third competitor: pyzmq (Debian `python3-zmq`) PUSH → PULL, the same roles and the
 * same timing method as bench/zmq-raw.ts. The Python program is kept here as text so that the
 * compiled bench needs no extra files; it talks to the parent with JSON lines on stdout and
 * waits for a line on stdin before the sender closes.
 */

export const PYZMQ_SCRIPT = String.raw`
import json, struct, sys, time, zmq

role, endpoint, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
size = max(8, size)

def tell(m):
    sys.stdout.write(json.dumps(m) + "\n")
    sys.stdout.flush()

ctx = zmq.Context()
if role == "send":
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 5000)
    mon = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    sock.bind(endpoint)
    tell({"event": "ready"})
    mon.recv_multipart()  # the receiver's connection is up
    template = bytes([0x5A]) * size
    pack = struct.Struct("<II").pack_into
    for seq in range(count):
        b = bytearray(template)
        pack(b, 0, seq, ~seq & 0xFFFFFFFF)
        sock.send(b)
    tell({"event": "sent", "count": count})
    sys.stdin.readline()
    sock.disable_monitor()
    mon.close()
    sock.close()
else:
    sock = ctx.socket(zmq.PULL)
    sock.connect(endpoint)
    tell({"event": "ready"})
    unpack = struct.Struct("<I").unpack_from
    n = nbytes = ooo = 0
    first = last = 0
    expected = 0
    problem = None
    while n < count:
        m = sock.recv(copy=False).buffer
        now = int(time.time() * 1000)
        if n == 0:
            first = now
        last = now
        n += 1
        nbytes += len(m)
        seq = unpack(m, 0)[0] if len(m) >= 8 else -1
        if seq != expected:
            ooo += 1
            if problem is None:
                problem = "expected %d, got %d at message %d" % (expected, seq, n)
        expected = seq + 1
    sock.close()
    r = {"event": "done", "count": n, "bytes": nbytes, "firstAt": first, "lastAt": last, "outOfOrder": ooo}
    if problem:
        r["firstProblem"] = problem
    tell(r)
ctx.term()
`;

/** A Python interpreter that can `import zmq`, or why there is none. */
export function findPyzmq(): { python: string; version: string } | { missing: string } {
  // A pyenv or venv python3 first on PATH may lack the Debian package that /usr/bin/python3 has.
  for (const python of ['python3', '/usr/bin/python3']) {
    const r = spawnSync(python, ['-c', 'import zmq; print(zmq.__version__, zmq.zmq_version())'], { encoding: 'utf8', timeout: 10_000 });
    if (r.status === 0) {
      const [py, lib] = r.stdout.trim().split(' ');
      return { python, version: `pyzmq ${py} (libzmq ${lib})` };
    }
  }
  return { missing: 'pyzmq not found (`python3 -c "import zmq"` fails; on Debian: apt-get install python3-zmq)' };
}
