/* softswitch native backend: the port engine. One thread, the interpreter lock never
 * taken: it waits on every socket port with epoll, takes up to BATCH frames from the ready
 * ones (UDP tunnels with recvmmsg, AF_PACKET interfaces from a PACKET_MMAP receive ring),
 * runs them through the current pipeline in one call, and sends what comes out in
 * batches (sendmmsg per port). Frames for ports it does not own (memory ports, the CPU
 * port) are queued for Python, which is woken through an eventfd.
 *
 * It is independent of any program: the pipeline is a pointer and the program's
 * `sw_run`/`sw_out_*` functions, swapped atomically between batches (a P4Runtime
 * SetForwardingPipelineConfig), so the ports, their learned peers and their fault state
 * outlive pipelines.
 *
 * Fault injection (drop, duplicate, reorder) draws from the same Mersenne Twister as
 * Python's random.Random and in the same order as ports.FaultyPort, so a seed gives the
 * same faults on both back ends; the state moves between Python and C when the engine
 * starts and stops. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define API __attribute__((visibility("default")))
#define PE_PORTS 512
#define BATCH 256             /* frames per pipeline call (the batch runs once it has this many) */
#define RX_MSGS 64            /* messages per recvmmsg */
#define MAX_FRAME 65536
/* a receive call may bring RX_MSGS coalesced buffers of up to GSO_MAX_SEGS frames each, a
 * faulty port three frames per frame: the batch has room for that beyond BATCH */
#define FRAMES_CAP (BATCH + 3 * RX_MSGS * 64)
#define ARENA ((size_t)(BATCH + 3 * RX_MSGS) * MAX_FRAME)
#define SEND_WAIT_MS 1000   /* a full socket buffer: wait this long for room, then drop */
#define PYQ_MAX (64u << 20)  /* bytes of frames waiting for Python before new ones are dropped */
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#define GSO_MAX_SEGS 64       /* the kernel's limit of segments per UDP GSO send */
#define GSO_MAX_BYTES 65000   /* and of bytes */

/* ---- Python's random.Random (MT19937, genrand_res53) -------------------------------- */
typedef struct { uint32_t mt[624]; int mti; } mt_t;

static uint32_t mt_next(mt_t *m) {
    static const uint32_t mag01[2] = {0x0u, 0x9908b0dfu};
    uint32_t y;
    if (m->mti >= 624) {
        int kk;
        for (kk = 0; kk < 624 - 397; kk++) {
            y = (m->mt[kk] & 0x80000000u) | (m->mt[kk + 1] & 0x7fffffffu);
            m->mt[kk] = m->mt[kk + 397] ^ (y >> 1) ^ mag01[y & 1u];
        }
        for (; kk < 623; kk++) {
            y = (m->mt[kk] & 0x80000000u) | (m->mt[kk + 1] & 0x7fffffffu);
            m->mt[kk] = m->mt[kk + (397 - 624)] ^ (y >> 1) ^ mag01[y & 1u];
        }
        y = (m->mt[623] & 0x80000000u) | (m->mt[0] & 0x7fffffffu);
        m->mt[623] = m->mt[396] ^ (y >> 1) ^ mag01[y & 1u];
        m->mti = 0;
    }
    y = m->mt[m->mti++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= (y >> 18);
    return y;
}

static double mt_random(mt_t *m) {
    uint32_t a = mt_next(m) >> 5, b = mt_next(m) >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

/* ---- ports ------------------------------------------------------------------------------ */
enum { PK_NONE, PK_UDP, PK_AFP };

typedef struct {
    int kind, fd;
    /* UDP: where frames go; a fixed peer also filters what is accepted */
    pthread_mutex_t peer_mu;
    struct sockaddr_in peer;
    int have_peer, fixed_peer;
    /* faults */
    int faulty;
    double drop, dup, reorder;
    mt_t mt;
    uint8_t *held;
    uint32_t held_len, has_held;
    /* AF_PACKET receive ring (TPACKET_V2): the next frame to look at is `cur` */
    uint8_t *ring;
    size_t ring_size;
    uint32_t frame_size, nframes, cur;
    /* counters */
    _Atomic uint64_t rx, tx, foreign, tx_drops, rx_drops;
    /* frames waiting to be sent: ntx frames (txv); flushing groups runs of equal-size
       frames into one UDP GSO message where the kernel allows it */
    struct mmsghdr *txm;
    struct iovec *txv;
    uint8_t (*txcm)[CMSG_SPACE(sizeof(uint16_t))];
    uint32_t ntx;
    int gso;
} pe_port;

typedef uint64_t (*run_fn)(void *sw, const uint8_t *buf, const uint64_t *offs, const uint32_t *lens,
                           const uint16_t *ports, uint32_t n, int keep);
typedef void (*lock_fn)(void *sw);
typedef const uint32_t *(*recs_fn)(void *sw);
typedef const uint8_t *(*data_fn)(void *sw);

typedef struct pe {
    pe_port p[PE_PORTS];
    pthread_t th;
    int running, epfd, stopfd, pyfd;
    _Atomic int stop;
    pthread_mutex_t pipe_mu;       /* held while a batch runs: swaps wait for its end */
    void *sw;
    run_fn run;      /* the pipeline's sw_run_unlocked, between lock and unlock */
    lock_fn lock, unlock;
    recs_fn recs;
    data_fn data;
    /* the batch being assembled: frames back to back in an arena */
    uint8_t *buf;
    uint64_t used;
    uint64_t offs[FRAMES_CAP];
    uint32_t lens[FRAMES_CAP];
    uint16_t ports[FRAMES_CAP];
    uint32_t n;
    /* receive scratch: one recvmmsg's frames before faults and the batch */
    struct mmsghdr rxm[RX_MSGS];
    struct iovec rxv[RX_MSGS];
    struct sockaddr_storage rxfrom[RX_MSGS];
    uint8_t rxctl[RX_MSGS][CMSG_SPACE(sizeof(int))];
    uint8_t *rxslab;
    /* for Python: frames to ports the engine does not own */
    pthread_mutex_t pyq_mu;
    uint8_t *pyq;
    uint32_t pyq_len, pyq_cap;
    _Atomic uint64_t py_dropped, batches, frames;
} pe_t;

static void pe_close_ring(pe_port *p) {
    if (!p->ring) return;
    munmap(p->ring, p->ring_size);
    p->ring = NULL;
    struct tpacket_req req;
    memset(&req, 0, sizeof req);
    setsockopt(p->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req);
    int v = TPACKET_V1;
    setsockopt(p->fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v);
}

/* A PACKET_MMAP receive ring on an AF_PACKET socket: the kernel writes frames into it and
 * the engine takes them without a system call while there are any. TPACKET_V2, one
 * status word per frame: each frame is handed over as soon as it is written. (TPACKET_V3
 * hands over whole blocks, when full or when a timer of at least 1 ms fires; at the low
 * rates of request-response traffic that added 0.9 ms to every frame, measured, and made
 * the workers resend.) Slots of 16 KiB hold jumbo frames. On any failure the socket is
 * read with recvmmsg instead. */
static void pe_open_ring(pe_port *p) {
    int v = TPACKET_V2;
    if (setsockopt(p->fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v)) return;
    struct tpacket_req req;
    memset(&req, 0, sizeof req);
    req.tp_block_size = 1u << 16;
    req.tp_frame_size = 1u << 14;
    req.tp_block_nr = 256;
    req.tp_frame_nr = (req.tp_block_size / req.tp_frame_size) * req.tp_block_nr;
    if (setsockopt(p->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req)) {
        v = TPACKET_V1;
        setsockopt(p->fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v);
        return;
    }
    size_t size = (size_t)req.tp_block_size * req.tp_block_nr;
    void *ring = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
    if (ring == MAP_FAILED) {
        memset(&req, 0, sizeof req);
        setsockopt(p->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req);
        v = TPACKET_V1;
        setsockopt(p->fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v);
        return;
    }
    p->ring = ring;
    p->ring_size = size;
    p->frame_size = req.tp_frame_size;
    p->nframes = req.tp_frame_nr;
    p->cur = 0;
}

/* ---- receiving -------------------------------------------------------------------- */
static void pyq_push(pe_t *e, uint32_t port, const uint8_t *d, uint32_t len) {
    uint32_t need = 16 + ((len + 7u) & ~7u);
    pthread_mutex_lock(&e->pyq_mu);
    if (e->pyq_len + need > PYQ_MAX) {
        pthread_mutex_unlock(&e->pyq_mu);
        atomic_fetch_add(&e->py_dropped, 1);
        return;
    }
    if (e->pyq_len + need > e->pyq_cap) {
        uint32_t cap = e->pyq_cap ? e->pyq_cap : 65536;
        while (cap < e->pyq_len + need) cap *= 2;
        uint8_t *nb = realloc(e->pyq, cap);
        if (!nb) { pthread_mutex_unlock(&e->pyq_mu); atomic_fetch_add(&e->py_dropped, 1); return; }
        e->pyq = nb;
        e->pyq_cap = cap;
    }
    uint32_t hdr[4] = {4 /* EV_PACKET */, port, len, 0};
    memcpy(e->pyq + e->pyq_len, hdr, 16);
    memcpy(e->pyq + e->pyq_len + 16, d, len);
    e->pyq_len += need;
    pthread_mutex_unlock(&e->pyq_mu);
}

static int room(pe_t *e) { return e->n < BATCH; }

static void batch_add(pe_t *e, uint32_t port, const uint8_t *d, uint32_t len) {
    if (len > MAX_FRAME) len = MAX_FRAME;
    if (e->n >= FRAMES_CAP || e->used + len > ARENA) {
        /* budget() leaves room for RX_MSGS buffers of GSO_MAX_SEGS frames; a kernel that
           coalesced more would overflow it: such frames are counted, never lost silently */
        atomic_fetch_add_explicit(&e->p[port].rx_drops, 1, memory_order_relaxed);
        return;
    }
    memcpy(e->buf + e->used, d, len);
    e->offs[e->n] = e->used;
    e->lens[e->n] = len;
    e->ports[e->n] = (uint16_t)port;
    e->used += (len + 63) & ~63ull;
    e->n++;
}

/* one received frame, through the port's faults (ports.FaultyPort.faults) */
static void deliver(pe_t *e, uint32_t number, pe_port *p, const uint8_t *d, uint32_t len) {
    atomic_fetch_add_explicit(&p->rx, 1, memory_order_relaxed);
    if (!p->faulty) {
        batch_add(e, number, d, len);
        return;
    }
    if (mt_random(&p->mt) < p->drop) return;
    int twice = mt_random(&p->mt) < p->dup;
    /* out = [frame] or [frame, frame]; then the held frame is appended, or the first
       frame becomes the held one */
    if (p->has_held) {
        batch_add(e, number, d, len);
        if (twice) batch_add(e, number, d, len);
        batch_add(e, number, p->held, p->held_len);
        p->has_held = 0;
        return;
    }
    if (mt_random(&p->mt) < p->reorder) {
        uint8_t *nb = realloc(p->held, len ? len : 1);
        if (nb) {
            p->held = nb;
            memcpy(p->held, d, len);
            p->held_len = len;
            p->has_held = 1;
            if (twice) batch_add(e, number, d, len);
            return;
        }
    }
    batch_add(e, number, d, len);
    if (twice) batch_add(e, number, d, len);
}

static int same_peer(const struct sockaddr_in *a, const struct sockaddr_in *b) {
    return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
}

/* frames a port can take before the batch is full; the rest wait for the next batch
 * (a duplicate or a released held frame can add two more per frame) */
static uint32_t budget(pe_t *e, pe_port *p) {
    uint32_t left = e->n < BATCH ? BATCH - e->n : 0;
    return p->faulty ? left / 3 : left;
}

/* recvmmsg of up to `want` frames into the receive scratch */
static int rx_mmsg(pe_t *e, pe_port *p, uint32_t want) {
    if (want > RX_MSGS) want = RX_MSGS;
    for (uint32_t i = 0; i < want; i++) {
        e->rxv[i].iov_base = e->rxslab + (size_t)i * MAX_FRAME;
        e->rxv[i].iov_len = MAX_FRAME;
        memset(&e->rxm[i].msg_hdr, 0, sizeof e->rxm[i].msg_hdr);
        e->rxm[i].msg_hdr.msg_iov = &e->rxv[i];
        e->rxm[i].msg_hdr.msg_iovlen = 1;
        e->rxm[i].msg_hdr.msg_name = &e->rxfrom[i];
        e->rxm[i].msg_hdr.msg_namelen = sizeof e->rxfrom[i];
        e->rxm[i].msg_hdr.msg_control = e->rxctl[i];
        e->rxm[i].msg_hdr.msg_controllen = sizeof e->rxctl[i];
    }
    return recvmmsg(p->fd, e->rxm, want, MSG_DONTWAIT, NULL);
}

/* the segment size of a UDP GRO buffer (several datagrams of a GSO sender), or 0 */
static uint32_t gro_size(struct msghdr *m) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c))
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int v;
            memcpy(&v, CMSG_DATA(c), sizeof v);
            return v > 0 ? (uint32_t)v : 0;
        }
    return 0;
}

static int rx_udp(pe_t *e, uint32_t number, pe_port *p) {
    uint32_t want = budget(e, p);
    if (!want) return 1;
    if (want > RX_MSGS) want = RX_MSGS;
    int got = rx_mmsg(e, p, want);
    if (got <= 0) return 0;
    for (int i = 0; i < got; i++) {
        struct sockaddr_in *from = (void *)&e->rxfrom[i];
        if (p->fixed_peer) {
            if (!same_peer(from, &p->peer)) {
                atomic_fetch_add_explicit(&p->foreign, 1, memory_order_relaxed);
                continue;
            }
        } else if (!p->have_peer || !same_peer(from, &p->peer)) {
            pthread_mutex_lock(&p->peer_mu);  /* learn the peer: frames go to the last sender */
            p->peer = *from;
            p->have_peer = 1;
            pthread_mutex_unlock(&p->peer_mu);
        }
        const uint8_t *d = e->rxslab + (size_t)i * MAX_FRAME;
        uint32_t len = e->rxm[i].msg_len, seg = gro_size(&e->rxm[i].msg_hdr);
        if (!seg || seg >= len) {
            deliver(e, number, p, d, len);
            continue;
        }
        for (uint32_t at = 0; at < len; at += seg)  /* one frame per datagram */
            deliver(e, number, p, d + at, len - at < seg ? len - at : seg);
    }
    return (uint32_t)got == want;  /* maybe more waiting */
}

static int rx_afp(pe_t *e, uint32_t number, pe_port *p) {
    if (!p->ring) {  /* no ring: plain recvmmsg */
        uint32_t want = budget(e, p);
        if (!want) return 1;
        if (want > RX_MSGS) want = RX_MSGS;
        int got = rx_mmsg(e, p, want);
        if (got <= 0) return 0;
        for (int i = 0; i < got; i++) {
            struct sockaddr_ll *from = (void *)&e->rxfrom[i];
            if (from->sll_pkttype != PACKET_OUTGOING)
                deliver(e, number, p, e->rxslab + (size_t)i * MAX_FRAME, e->rxm[i].msg_len);
        }
        return (uint32_t)got == want;
    }
    /* every frame the kernel has handed over, while the batch has room */
    for (;;) {
        struct tpacket2_hdr *h = (void *)(p->ring + (size_t)p->cur * p->frame_size);
        if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) return 0;
        if (!budget(e, p)) return 1;
        struct sockaddr_ll *ll = (void *)((uint8_t *)h + TPACKET_ALIGN(sizeof(struct tpacket2_hdr)));
        if (h->tp_len > h->tp_snaplen)  /* larger than a ring slot: cut, so not delivered */
            atomic_fetch_add_explicit(&p->rx_drops, 1, memory_order_relaxed);
        else if (ll->sll_pkttype != PACKET_OUTGOING)
            deliver(e, number, p, (uint8_t *)h + h->tp_mac, h->tp_snaplen);
        __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        p->cur = (p->cur + 1) % p->nframes;
    }
}

/* ---- sending ------------------------------------------------------------------------- */
/* Messages for the ntx queued frames: a run of equal-size frames to a UDP peer becomes
 * one message with UDP_SEGMENT (one pass through the kernel for up to GSO_MAX_SEGS
 * datagrams), anything else one message per frame. Returns the number of messages. */
static uint32_t tx_messages(pe_port *p) {
    uint32_t nm = 0;
    for (uint32_t i = 0; i < p->ntx;) {
        uint32_t n = 1;
        size_t len = p->txv[i].iov_len, total = len;
        if (p->kind == PK_UDP && p->gso)
            while (i + n < p->ntx && n < GSO_MAX_SEGS && p->txv[i + n].iov_len == len && total + len <= GSO_MAX_BYTES) {
                total += len;
                n++;
            }
        struct msghdr *h = &p->txm[nm].msg_hdr;
        memset(h, 0, sizeof *h);
        h->msg_iov = &p->txv[i];
        h->msg_iovlen = n;
        if (p->kind == PK_UDP) {
            h->msg_name = &p->peer;
            h->msg_namelen = sizeof p->peer;
        }
        if (n > 1) {
            h->msg_control = p->txcm[nm];
            h->msg_controllen = sizeof p->txcm[nm];
            struct cmsghdr *c = CMSG_FIRSTHDR(h);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t seg = (uint16_t)len;
            memcpy(CMSG_DATA(c), &seg, sizeof seg);
        }
        p->txm[nm].msg_len = n;  /* frames in the message, until the kernel overwrites it */
        nm++;
        i += n;
    }
    return nm;
}

static void tx_flush(pe_port *p) {
    uint32_t nm = tx_messages(p);
    uint32_t frames[BATCH];  /* frames per message (at most one message per queued frame) */
    for (uint32_t i = 0; i < nm; i++) frames[i] = p->txm[i].msg_len;
    uint32_t done = 0, sent = 0, dropped = 0;
    int waited = 0;
    while (done < nm) {
        int r = sendmmsg(p->fd, p->txm + done, nm - done, MSG_DONTWAIT);
        if (r > 0) {
            for (int i = 0; i < r; i++) sent += frames[done + i];
            done += (uint32_t)r;
            waited = 0;  /* room came: a full buffer later in this batch is waited for again */
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) {  /* the socket buffer is full */
            if (waited) break;  /* still full after a whole wait: the rest is dropped */
            struct pollfd pf = {p->fd, POLLOUT, 0};
            poll(&pf, 1, SEND_WAIT_MS);  /* backpressure, as the Python ports give it */
            waited = 1;
            continue;
        }
        if (r < 0 && frames[done] > 1 && p->gso && errno != ENOBUFS) {
            /* the kernel refuses segmentation offload here: frame by frame from now on */
            p->gso = 0;
            uint32_t rest = 0;
            for (uint32_t i = done; i < nm; i++) rest += frames[i];
            uint32_t first = 0;
            for (uint32_t i = 0; i < done; i++) first += frames[i];
            memmove(p->txv, p->txv + first, rest * sizeof *p->txv);
            p->ntx = rest;
            atomic_fetch_add_explicit(&p->tx, sent, memory_order_relaxed);
            if (dropped) atomic_fetch_add_explicit(&p->tx_drops, dropped, memory_order_relaxed);
            tx_flush(p);
            return;
        }
        /* this message is refused (a full queue behind the socket: ENOBUFS, too big, no
           route): it alone is dropped, as the Python ports drop one frame */
        dropped += frames[done];
        done++;
    }
    for (uint32_t i = done; i < nm; i++) dropped += frames[i];
    atomic_fetch_add_explicit(&p->tx, sent, memory_order_relaxed);
    if (dropped) atomic_fetch_add_explicit(&p->tx_drops, dropped, memory_order_relaxed);
    p->ntx = 0;
}

static void tx_queue(pe_port *p, const uint8_t *d, uint32_t len) {
    if (p->ntx == BATCH) tx_flush(p);
    p->txv[p->ntx].iov_base = (void *)d;
    p->txv[p->ntx].iov_len = len;
    p->ntx++;
}

static void route(pe_t *e, uint64_t nout) {
    const uint32_t *r = e->recs(e->sw);
    const uint8_t *d = e->data(e->sw);
    uint8_t dirty[PE_PORTS] = {0};
    for (uint64_t i = 0; i < nout; i++, r += 4) {
        uint32_t port = r[1];
        pe_port *p = port < PE_PORTS ? &e->p[port] : NULL;
        if (!p || p->kind == PK_NONE) {
            pyq_push(e, port, d + r[2], r[3]);
            continue;
        }
        if (p->kind == PK_UDP && !p->have_peer) continue;  /* nobody to send to yet */
        tx_queue(p, d + r[2], r[3]);
        dirty[port] = 1;
    }
    for (uint32_t i = 0; i < PE_PORTS; i++)
        if (dirty[i]) tx_flush(&e->p[i]);
}

static void run_batch(pe_t *e) {
    if (!e->n) return;
    pthread_mutex_lock(&e->pipe_mu);
    if (e->sw) {  /* the outputs are read before anyone else (Python's process) runs */
        e->lock(e->sw);
        uint64_t nout = e->run(e->sw, e->buf, e->offs, e->lens, e->ports, e->n, 1);
        route(e, nout);
        e->unlock(e->sw);
    }
    pthread_mutex_unlock(&e->pipe_mu);
    atomic_fetch_add_explicit(&e->batches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->frames, e->n, memory_order_relaxed);
    e->n = 0;
    e->used = 0;
    if (e->pyq_len) {
        uint64_t one = 1;
        (void)!write(e->pyfd, &one, sizeof one);
    }
}

static void *loop(void *arg) {
    pe_t *e = arg;
    struct epoll_event ev[64];
    uint8_t carry[PE_PORTS];
    int ncarry = 0;
    memset(carry, 0, sizeof carry);
    while (!atomic_load(&e->stop)) {
        int n = epoll_wait(e->epfd, ev, 64, ncarry ? 0 : 100);
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < n; i++) {
            uint32_t number = ev[i].data.u32;
            if (number < PE_PORTS && !carry[number]) { carry[number] = 1; ncarry++; }
        }
        /* serve every ready port in turn, BATCH frames per pipeline call; a port that
           may have more stays ready (it might not be signalled again) */
        for (uint32_t number = 0; number < PE_PORTS && ncarry; number++) {
            if (!carry[number]) continue;
            pe_port *p = &e->p[number];
            int more = p->kind == PK_UDP ? rx_udp(e, number, p) : p->kind == PK_AFP ? rx_afp(e, number, p) : 0;
            if (!more) { carry[number] = 0; ncarry--; }
            if (!room(e)) run_batch(e);
        }
        run_batch(e);
    }
    return NULL;
}

/* ---- API ------------------------------------------------------------------------------ */
API void pe_free(pe_t *e);
API void pe_stop(pe_t *e);

API pe_t *pe_new(void) {
    pe_t *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    pthread_mutex_init(&e->pipe_mu, NULL);
    pthread_mutex_init(&e->pyq_mu, NULL);
    for (int i = 0; i < PE_PORTS; i++) { pthread_mutex_init(&e->p[i].peer_mu, NULL); e->p[i].fd = -1; }
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    e->pyfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    e->buf = malloc(ARENA);
    e->rxslab = malloc((size_t)RX_MSGS * MAX_FRAME);
    if (e->epfd < 0 || e->pyfd < 0 || !e->buf || !e->rxslab) { pe_free(e); return NULL; }
    return e;
}

API void pe_free(pe_t *e) {
    if (!e) return;
    pe_stop(e);
    for (int i = 0; i < PE_PORTS; i++) {
        free(e->p[i].held);
        free(e->p[i].txm);
        free(e->p[i].txv);
        free(e->p[i].txcm);
        pthread_mutex_destroy(&e->p[i].peer_mu);
    }
    if (e->epfd >= 0) close(e->epfd);
    if (e->pyfd >= 0) close(e->pyfd);
    free(e->buf);
    free(e->rxslab);
    free(e->pyq);
    free(e);
}

/* kind 1: UDP tunnel (peer: IPv4 address and port in network order, or 0/0 to learn it;
 * fixed: accept frames only from that peer); kind 2: AF_PACKET. */
API int pe_add_port(pe_t *e, uint32_t number, int kind, int fd, uint32_t peer_ip, uint16_t peer_port, int fixed) {
    if (number >= PE_PORTS || e->running || e->p[number].kind != PK_NONE) return -1;
    pe_port *p = &e->p[number];
    p->txm = calloc(BATCH, sizeof *p->txm);
    p->txv = calloc(BATCH, sizeof *p->txv);
    p->txcm = calloc(BATCH, sizeof *p->txcm);
    if (!p->txm || !p->txv || !p->txcm) return -1;
    if (kind == PK_UDP) {  /* datagrams of GSO senders arrive coalesced; sends are offloaded */
        int one = 1;
        setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one);
        p->gso = 1;
    }
    p->kind = kind;
    p->fd = fd;
    p->peer.sin_family = AF_INET;
    p->peer.sin_addr.s_addr = peer_ip;
    p->peer.sin_port = peer_port;
    p->have_peer = peer_port != 0;
    p->fixed_peer = fixed;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = number};
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev)) { p->kind = PK_NONE; return -1; }
    return 0;
}

/* faults and the generator's state: 624 words and the position, as random.getstate() */
API void pe_set_faults(pe_t *e, uint32_t number, double drop, double dup, double reorder, const uint32_t *state,
                       int pos, const uint8_t *held, uint32_t held_len, int has_held) {
    if (number >= PE_PORTS) return;
    pe_port *p = &e->p[number];
    p->faulty = 1;
    p->drop = drop;
    p->dup = dup;
    p->reorder = reorder;
    memcpy(p->mt.mt, state, sizeof p->mt.mt);
    p->mt.mti = pos;
    p->has_held = 0;
    if (has_held) {
        uint8_t *nb = realloc(p->held, held_len ? held_len : 1);
        if (nb) { p->held = nb; memcpy(nb, held, held_len); p->held_len = held_len; p->has_held = 1; }
    }
}

API int pe_get_faults(pe_t *e, uint32_t number, uint32_t *state, uint8_t *held, uint32_t cap, uint32_t *held_len) {
    if (number >= PE_PORTS) return -1;
    pe_port *p = &e->p[number];
    memcpy(state, p->mt.mt, sizeof p->mt.mt);
    *held_len = 0;
    if (p->has_held && p->held_len <= cap) { memcpy(held, p->held, p->held_len); *held_len = p->held_len; }
    return p->has_held ? p->mt.mti | (1 << 30) : p->mt.mti;
}

API void pe_peer(pe_t *e, uint32_t number, uint32_t *out) {
    if (number >= PE_PORTS) { out[0] = 0; return; }
    pe_port *p = &e->p[number];
    pthread_mutex_lock(&p->peer_mu);
    out[0] = p->have_peer;
    out[1] = p->peer.sin_addr.s_addr;
    out[2] = p->peer.sin_port;
    pthread_mutex_unlock(&p->peer_mu);
}

API void pe_set_pipeline(pe_t *e, void *sw, void *run, void *lock, void *unlock, void *recs, void *data) {
    pthread_mutex_lock(&e->pipe_mu);
    e->sw = sw;
    e->run = (run_fn)run;
    e->lock = (lock_fn)lock;
    e->unlock = (lock_fn)unlock;
    e->recs = (recs_fn)recs;
    e->data = (data_fn)data;
    pthread_mutex_unlock(&e->pipe_mu);
}

API int pe_start(pe_t *e) {
    if (e->running) return 0;
    for (int i = 0; i < PE_PORTS; i++)
        if (e->p[i].kind == PK_AFP) pe_open_ring(&e->p[i]);
    atomic_store(&e->stop, 0);
    if (pthread_create(&e->th, NULL, loop, e)) return -1;
    e->running = 1;
    return 0;
}

API void pe_stop(pe_t *e) {
    if (!e->running) return;
    atomic_store(&e->stop, 1);
    pthread_join(e->th, NULL);
    e->running = 0;
    /* UDP ports keep UDP_GRO on: datagrams the kernel already coalesced stay one buffer
     * whatever the option says from now on, and only with the option on does a receive
     * say where to split them (ports.UdpPort.recv_nowait splits them for Python) */
    for (int i = 0; i < PE_PORTS; i++) pe_close_ring(&e->p[i]);
}

/* a frame from Python (a PacketOut or a memory port's frame that came out here) */
API void pe_send(pe_t *e, uint32_t number, const uint8_t *d, uint32_t len) {
    if (number >= PE_PORTS) return;
    pe_port *p = &e->p[number];
    struct sockaddr_in peer;
    pthread_mutex_lock(&p->peer_mu);
    int have = p->have_peer;
    peer = p->peer;
    pthread_mutex_unlock(&p->peer_mu);
    if (p->kind == PK_UDP && !have) return;
    for (int tries = 0; tries < 2; tries++) {
        ssize_t r = p->kind == PK_UDP ? sendto(p->fd, d, len, MSG_DONTWAIT, (void *)&peer, sizeof peer)
                                      : send(p->fd, d, len, MSG_DONTWAIT);
        if (r >= 0) { atomic_fetch_add(&p->tx, 1); return; }
        if (errno != EAGAIN && errno != ENOBUFS) break;
        struct pollfd pf = {p->fd, POLLOUT, 0};
        poll(&pf, 1, SEND_WAIT_MS);
    }
    atomic_fetch_add(&p->tx_drops, 1);
}

API int pe_pyfd(pe_t *e) { return e->pyfd; }

API uint32_t pe_take(pe_t *e, uint8_t *buf, uint32_t cap) {
    uint64_t junk;
    (void)!read(e->pyfd, &junk, sizeof junk);
    pthread_mutex_lock(&e->pyq_mu);
    uint32_t n = 0;
    while (n + 16 <= e->pyq_len) {
        uint32_t hdr[4];
        memcpy(hdr, e->pyq + n, 16);
        uint32_t rec = 16 + ((hdr[2] + 7u) & ~7u);
        if (n + rec > cap) break;
        n += rec;
    }
    if (n) {
        memcpy(buf, e->pyq, n);
        memmove(e->pyq, e->pyq + n, e->pyq_len - n);
        e->pyq_len -= n;
    }
    uint32_t left = e->pyq_len;
    pthread_mutex_unlock(&e->pyq_mu);
    if (left) {  /* more than `cap` was waiting: its wake-up was read above, so give it again */
        uint64_t one = 1;
        (void)!write(e->pyfd, &one, sizeof one);
    }
    return n;
}

API uint32_t pe_pending(pe_t *e) {
    pthread_mutex_lock(&e->pyq_mu);
    uint32_t n = e->pyq_len;
    pthread_mutex_unlock(&e->pyq_mu);
    return n;
}

/* received, sent, frames from foreign sources dropped, frames not sent, frames the
 * kernel dropped before the engine read them (an interface's receive ring was full; the
 * kernel's PACKET_STATISTICS count resets when read, so it is summed here) */
API void pe_port_stats(pe_t *e, uint32_t number, uint64_t *out) {
    if (number >= PE_PORTS) {
        memset(out, 0, 5 * sizeof *out);
        return;
    }
    pe_port *p = &e->p[number];
    if (p->kind == PK_AFP) {
        struct tpacket_stats st;
        socklen_t len = sizeof st;
        if (getsockopt(p->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0)
            atomic_fetch_add(&p->rx_drops, st.tp_drops);
    }
    out[0] = atomic_load(&p->rx);
    out[1] = atomic_load(&p->tx);
    out[2] = atomic_load(&p->foreign);
    out[3] = atomic_load(&p->tx_drops);
    out[4] = atomic_load(&p->rx_drops);
}

API void pe_stats(pe_t *e, uint64_t *out) {
    out[0] = atomic_load(&e->batches);
    out[1] = atomic_load(&e->frames);
    out[2] = atomic_load(&e->py_dropped);
}
