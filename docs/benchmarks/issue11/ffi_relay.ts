// Experiment: a TCP relay whose I/O is libc through Deno FFI (epoll, recv, send), one thread,
// blocking epoll_wait. Same shape as bench_cost_bare.ts --mode relay (one upstream connection
// per client connection), to see what a Deno proxy's floor is without Deno's socket ops.
// Usage: deno run -A ffi_relay.ts PORT UPSTREAM_PORT (lengths are passed as u32: size_t values
// below 2^32 zero-extend on x86-64). An experiment, not sipedge code: the upstream socket is
// blocking (loopback), no error handling beyond closing a pair.
const libc = Deno.dlopen("libc.so.6", {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "u32", "i32"], result: "isize" },
  send: { parameters: ["i32", "buffer", "u32", "i32"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
});
const L = libc.symbols;
const AF_INET = 2, SOCK_STREAM = 1, SOCK_NONBLOCK = 0o4000, SOL_SOCKET = 1, SO_REUSEADDR = 2;
const SO_REUSEPORT = 15, IPPROTO_TCP = 6, TCP_NODELAY = 1;
const EPOLLIN = 1, EPOLLOUT = 4, EPOLL_CTL_ADD = 1, EPOLL_CTL_MOD = 3, EPOLL_CTL_DEL = 2;

function sockaddr(port: number): Uint8Array {
  const a = new Uint8Array(16);
  a[0] = AF_INET;
  a[2] = port >> 8;
  a[3] = port & 255;
  a[4] = 127;
  a[7] = 1;
  return a;
}
const one = new Int32Array([1]);
const oneBytes = new Uint8Array(one.buffer);

const port = Number(Deno.args[0]);
const upstreamPort = Number(Deno.args[1]);
const ep = L.epoll_create1(0);
const ev = new Uint8Array(12);
const evView = new DataView(ev.buffer);
function ctl(op: number, fd: number, events: number) {
  evView.setUint32(0, events, true);
  evView.setUint32(4, fd, true);
  evView.setUint32(8, 0, true);
  L.epoll_ctl(ep, op, fd, ev);
}

const lfd = L.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
L.setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, oneBytes, 4);
L.setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, oneBytes, 4);
if (L.bind(lfd, sockaddr(port), 16) !== 0) throw new Error("bind");
L.listen(lfd, 1024);
ctl(EPOLL_CTL_ADD, lfd, EPOLLIN);

const peer = new Map<number, number>();
const pending = new Map<number, Uint8Array>(); // bytes waiting for fd to become writable
const buf = new Uint8Array(65536);
const MAX = 256;
const events = new Uint8Array(12 * MAX);
const eventsView = new DataView(events.buffer);

function closePair(fd: number) {
  const other = peer.get(fd);
  for (const f of [fd, other]) {
    if (f === undefined) continue;
    L.epoll_ctl(ep, EPOLL_CTL_DEL, f, ev);
    L.close(f);
    peer.delete(f);
    pending.delete(f);
  }
}

function sendAll(fd: number, data: Uint8Array) {
  const queued = pending.get(fd);
  if (queued !== undefined) {
    const joined = new Uint8Array(queued.length + data.length);
    joined.set(queued);
    joined.set(data, queued.length);
    pending.set(fd, joined);
    return;
  }
  const n = Number(L.send(fd, data, data.length, 0x4000 /* MSG_NOSIGNAL */));
  const sent = n < 0 ? 0 : n;
  if (sent < data.length) {
    pending.set(fd, data.slice(sent));
    ctl(EPOLL_CTL_MOD, fd, EPOLLIN | EPOLLOUT);
  }
}

console.log("LISTENING");
while (true) {
  const n = L.epoll_wait(ep, events, MAX, -1);
  for (let i = 0; i < n; i++) {
    const flags = eventsView.getUint32(i * 12, true);
    const fd = eventsView.getUint32(i * 12 + 4, true);
    if (fd === lfd) {
      while (true) {
        const c = L.accept4(lfd, null, null, SOCK_NONBLOCK);
        if (c < 0) break;
        const u = L.socket(AF_INET, SOCK_STREAM, 0); // blocking connect on loopback, then nonblocking use
        L.connect(u, sockaddr(upstreamPort), 16);
        L.setsockopt(c, IPPROTO_TCP, TCP_NODELAY, oneBytes, 4);
        L.setsockopt(u, IPPROTO_TCP, TCP_NODELAY, oneBytes, 4);
        peer.set(c, u);
        peer.set(u, c);
        ctl(EPOLL_CTL_ADD, c, EPOLLIN);
        ctl(EPOLL_CTL_ADD, u, EPOLLIN);
      }
      continue;
    }
    if (flags & EPOLLOUT) {
      const queued = pending.get(fd);
      pending.delete(fd);
      ctl(EPOLL_CTL_MOD, fd, EPOLLIN);
      if (queued !== undefined) sendAll(fd, queued);
    }
    if (flags & (EPOLLIN | 8 | 16)) {
      const got = Number(L.recv(fd, buf, buf.length, 0x40 /* MSG_DONTWAIT */));
      if (got === 0 || (got < 0 && (flags & (8 | 16)))) {
        closePair(fd);
        continue;
      }
      if (got < 0) continue;
      const other = peer.get(fd);
      if (other !== undefined) sendAll(other, buf.subarray(0, got));
    }
  }
}
