/* The worker's packet engine in C: one allreduce call from the tensor to the sums.
 *
 * What worker/stream.py, worker/plans.py and worker/quant.py do with numpy, a batch at a
 * time, this does per packet without the GIL: build the packet rows (quantizing a chunk
 * straight into its row), send and receive in batches (sendmmsg/recvmmsg on a kernel UDP
 * socket, with the tunnel's Ethernet/IPv4/UDP header as a second I/O vector), match
 * results to slots and rounds, hand them to the plan (dequantizing straight out of the
 * result row), and detect losses (the window unit below: the same decisions as
 * worker/window.py). The Python code stays the reference; tests compare the two.
 *
 * cs_run returns to Python at least every `slice_s` seconds, so that Ctrl-C and the
 * caller's abort hook are served during long calls. Three kinds of I/O:
 *   CS_IO_FD     the engine moves packets on a socket it borrows from the transport;
 *   CS_IO_QUEUE  Python moves them (any transport: test doubles, in-memory switches);
 *                cs_run returns CS_IO with rows to send in the outbox, and cs_feed hands
 *                it what came back;
 *   CS_IO_ECHO   every packet comes back at once as its own result, as from a switch
 *                with a one-worker job (benchmarks: the worker's own cost per packet).
 *
 * Received datagrams are untrusted: every length and field is checked before use, and
 * nothing in them indexes memory without a bound (tests fuzz this under AddressSanitizer).
 *
 * The declarations between "API begin" and "API end" are also what Python's cffi reads
 * (worker/cstream.py), so they hold only what cffi's parser accepts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* linux/udp.h: segmentation offload size (Linux 4.18+) */
#endif

/* AddressSanitizer builds (the fuzz tests) mark the bytes after every received datagram
 * unaddressable, so that reading past a datagram's end is reported although the
 * datagrams share one buffer. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define GAP 16
#else
#define ASAN_POISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define GAP 0
#endif

/* API begin */
#define CS_IO_FD 0
#define CS_IO_QUEUE 1
#define CS_IO_ECHO 2
#define CS_FRAME_NONE 0
#define CS_FRAME_ETH 1

#define CS_DONE 0
#define CS_SLICE 1
#define CS_IO 2
#define CS_TIMEOUT 3
#define CS_MISMATCH 4
#define CS_DESCRIPTOR 5

#define CS_DESCRIPTOR_LANES 6
#define CS_T_I32 0
#define CS_T_F32 1
#define CS_T_F64 2

typedef struct {
    int32_t io;          /* CS_IO_* */
    int32_t fd;          /* CS_IO_FD: the socket (non-blocking use; owned by Python) */
    int32_t framing;     /* CS_FRAME_*: what a received datagram is */
    uint16_t rx_port;    /* CS_FRAME_ETH: UDP destination port of frames for this worker */
    uint8_t rx_src_ip[4];  /* CS_FRAME_ETH: the IPv4 source every result must carry (the */
    uint16_t rx_src_port;  /* aggregation address), and its UDP source port */
    uint16_t job_id;
    uint8_t rank;
    uint32_t slots;
    uint32_t k;
    uint8_t dest[16];    /* sockaddr_in of the switch (or tunnel port) */
    uint32_t dest_len;
    uint8_t prefix[64];  /* bytes sent in front of every payload (the tunnel's frame header) */
    uint32_t prefix_len;
    double rto_initial;
    double rto_min;
    double rto_max;
    int32_t gso;         /* CS_IO_FD: 1 to send with UDP segmentation offload where it works */
} cs_config;

typedef struct {
    int32_t f_in_type;   /* CS_T_F32 or CS_T_F64: the float segment's values */
    int32_t f_out_type;  /* CS_T_F32 or CS_T_F64: its sums */
    int32_t shift;       /* quantization headroom (quant.shift_for) */
    int32_t world;
    int64_t n_f;         /* float elements */
    int64_t n_i;         /* int32 elements */
    const void *f_in;
    void *f_out;         /* n_f sums of f_out_type */
    const int32_t *i_in;
    int32_t *i_out;      /* n_i sums */
    int8_t *proposals;   /* ceil(n_f / k) exponent proposals, written */
    int8_t *agreed;      /* ceil(n_f / k) agreed exponents, written */
    double timeout_s;    /* no new result for this long: CS_TIMEOUT */
} cs_call;

typedef struct {
    uint64_t seq;            /* packets of all completed calls: the next call's first */
    uint64_t high;           /* one past the highest packet index any call may have sent */
    int64_t sent;            /* this call: every packet put on the wire */
    int64_t retransmitted;
    int64_t duplicates;      /* well-formed results that matched nothing outstanding */
    int64_t bad;             /* datagrams too short or not for this worker */
    double elapsed;
    double srtt;             /* negative until the first sample */
    double rto;
    double wait_s;           /* CS_IO: how long Python may wait for input */
    uint32_t out_count;      /* CS_IO: slots whose rows to send (cs_out_slots), then 0 */
    double waited;           /* CS_TIMEOUT: seconds without progress */
    int32_t err_slot;        /* CS_MISMATCH: the result and what was sent */
    int32_t err_round;
    int32_t err_exp_only;
    int32_t err_want_exp_only;
    int64_t err_offset;
    int64_t err_want_offset;
    int64_t desc_got[6];     /* CS_DESCRIPTOR: the switch's maximum of the descriptors */
} cs_state;

typedef struct cs_engine cs_engine;
typedef struct cs_window cs_window;

cs_engine *cs_new(const cs_config *cfg);
void cs_free(cs_engine *e);
cs_state *cs_state_of(cs_engine *e);
uint8_t *cs_rows(cs_engine *e);
uint32_t cs_row_len(cs_engine *e);
uint32_t *cs_out_slots(cs_engine *e);
int cs_feed(cs_engine *e, const uint8_t *data, const uint32_t *lens, uint32_t count);
int cs_begin(cs_engine *e, const cs_call *call);  /* 0; -1 refused (bad call); -2 out of memory */
int cs_run(cs_engine *e, double slice_s);
uint32_t cs_stuck(cs_engine *e, int32_t *slots, int32_t *rounds, uint32_t max);

cs_window *cs_win_new(uint32_t slots, double rto_initial, double rto_min, double rto_max);
void cs_win_free(cs_window *w);
void cs_win_start(cs_window *w, double now);
void cs_win_sent(cs_window *w, uint32_t slot, int64_t idx, double now);
int64_t cs_win_acked(cs_window *w, uint32_t slot, double now);
uint32_t cs_win_due(cs_window *w, double now, uint32_t *out);
double cs_win_next(cs_window *w, double now);
uint32_t cs_win_outstanding(cs_window *w);
double cs_win_rto(cs_window *w);
double cs_win_srtt(cs_window *w);
double cs_win_rack_rtt(cs_window *w);

void cs_block_exponents(int32_t in_type, const void *in, int64_t n, uint32_t k, int8_t *out);
void cs_quantize(int32_t in_type, const void *in, int64_t n, uint32_t k, const int8_t *exps,
                 int32_t shift, int32_t *out);
void cs_dequantize(int32_t out_type, const int32_t *sums, int64_t n, uint32_t k,
                   const int8_t *exps, int32_t shift, void *out);

int64_t cs_echo_serve(int32_t fd, int32_t framing, double seconds, int32_t *stop);
/* API end */

/* ---------------------------------------------------------------------------------- */
/* Wire layout (p4reduce/contract.py): flags:8 job_id:16 worker_id:8 slot:16 round:8
 * offset:32 exp:8 | K x int32, all big-endian. */

#define HDR_LEN 12
#define F_RESULT 0x01
#define F_RETRANSMIT 0x02
#define F_EXP_ONLY 0x04
#define EXP_ZERO (-128)
#define EXP_POISON 127
#define MIN_EXP (-127)
#define MAX_EXP 126
#define ETH_LEN 14
#define FRAME_OVERHEAD 42
#define MIN_REORDER_S 0.001
#define MAX_WAIT_S 0.05
#define RX_BATCH 256
#define RX_SIZE 2048
#define TX_BATCH 256
/* UDP segmentation offload: up to GSO_SEGS equal datagrams per send, GSO_MSGS sends per
 * system call */
#define GSO_SEGS 64
#define GSO_MSGS 16

static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xFF; }
static inline void put32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24; p[1] = (v >> 16) & 0xFF; p[2] = (v >> 8) & 0xFF; p[3] = v & 0xFF;
}
static inline uint32_t load_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_s(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static void *grow(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return p;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *q = realloc(p, n * elem);
    if (!q) return NULL;
    *cap = n;
    return q;
}

/* ---------------------------------------------------------------------------------- */
/* Block floating point: the same bits as worker/quant.py.
 *
 * Exponent proposal of a chunk: the smallest E with max|x| < 2^E, clipped at MIN_EXP;
 * EXP_ZERO for an all-zero chunk; EXP_POISON for NaN, inf or max|x| >= 2^126. The max is
 * taken over the magnitudes' bit patterns, which order like the values (and put NaN and
 * inf above every finite value): an integer reduction the compiler can vectorize.
 *
 * Quantization of x with agreed E: rint(x * 2^(shift - E)). For float32 input quant.py
 * multiplies in float32 when the scale fits a float32, else in float64; both are the
 * exact product (|x * scale| >= 2^-126, exact in either) or round to 0 (tinier), so
 * this picks per chunk what quant.py picks per batch and gets the same integers.
 *
 * Dequantization of a sum s: s * 2^(E - shift); to float32 as float32(s) * scale when the
 * scale is a normal float32 (or 0), else float32(float64(s) * scale), as
 * quant.dequantize_f32 (which is proven there to equal rounding the float64 product). */

/* The per-value loops are built twice on x86-64, for AVX2 (rounding, byte swaps and
 * conversions of 8 lanes per instruction) and for the baseline; the loader picks one at
 * run time. Both round the same way (to nearest, ties to even), so the bits are equal
 * (the tests build with -DCS_BASELINE too, to check the baseline on any machine). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(CS_BASELINE)
#define HOT __attribute__((target_clones("avx2", "default")))
#else
#define HOT
#endif

static int8_t exp_of_bits(double maxabs, int bad) {
    if (bad) return EXP_POISON;
    if (maxabs == 0.0) return EXP_ZERO;
    int e;
    frexp(maxabs, &e);
    if (e < MIN_EXP) e = MIN_EXP;
    if (e > MAX_EXP) return EXP_POISON;
    return (int8_t)e;
}

HOT static int8_t block_exp_f32(const float *x, int64_t cnt) {
    uint32_t mx = 0;
    for (int64_t i = 0; i < cnt; i++) {
        uint32_t b;
        memcpy(&b, x + i, 4);
        b &= 0x7FFFFFFFu;
        mx = b > mx ? b : mx;
    }
    float f;
    memcpy(&f, &mx, 4);
    return exp_of_bits((double)f, mx >= 0x7F800000u);
}

HOT static int8_t block_exp_f64(const double *x, int64_t cnt) {
    uint64_t mx = 0;
    for (int64_t i = 0; i < cnt; i++) {
        uint64_t b;
        memcpy(&b, x + i, 8);
        b &= 0x7FFFFFFFFFFFFFFFull;
        mx = b > mx ? b : mx;
    }
    double f;
    memcpy(&f, &mx, 8);
    return exp_of_bits(f, mx >= 0x7FF0000000000000ull);
}

static inline int reserved(int8_t e) { return e == EXP_ZERO || e == EXP_POISON; }

/* cnt values of one chunk into K big-endian lanes (zeros after cnt); the float to int32
 * conversion is of integral values below 2^30 (the agreed exponent bounds them) */
HOT static void quant_f32(const float *x, int64_t cnt, uint32_t k, int8_t e, int shift,
                      uint32_t *dst) {
    int64_t i = 0;
    if (!reserved(e)) {
        int sh = shift - e;
        if (sh <= 127) {
            float s = ldexpf(1.0f, sh);
            for (; i < cnt; i++) dst[i] = __builtin_bswap32((uint32_t)(int32_t)rintf(x[i] * s));
        } else {
            double s = ldexp(1.0, sh);
            for (; i < cnt; i++)
                dst[i] = __builtin_bswap32((uint32_t)(int32_t)rint((double)x[i] * s));
        }
    }
    for (; i < k; i++) dst[i] = 0;
}

HOT static void quant_f64(const double *x, int64_t cnt, uint32_t k, int8_t e, int shift,
                      uint32_t *dst) {
    int64_t i = 0;
    if (!reserved(e)) {
        double s = ldexp(1.0, shift - e);
        for (; i < cnt; i++) dst[i] = __builtin_bswap32((uint32_t)(int32_t)rint(x[i] * s));
    }
    for (; i < k; i++) dst[i] = 0;
}

HOT static void copy_i32(const int32_t *x, int64_t cnt, uint32_t k, uint32_t *dst) {
    int64_t i = 0;
    for (; i < cnt; i++) dst[i] = __builtin_bswap32((uint32_t)x[i]);
    for (; i < k; i++) dst[i] = 0;
}

static inline double deq_scale(int8_t e, int shift) {
    return reserved(e) ? 0.0 : ldexp(1.0, e - shift);
}

/* cnt big-endian sums (read unaligned) to out */
HOT static void deq_f32(const uint8_t *src, int64_t cnt, int8_t e, int shift, float *out) {
    double scale = deq_scale(e, shift);
    if (scale == 0.0 || scale >= 0x1p-126) {
        float s = (float)scale;
        for (int64_t i = 0; i < cnt; i++)
            out[i] = (float)(int32_t)__builtin_bswap32(load_u32(src + 4 * i)) * s;
    } else {
        for (int64_t i = 0; i < cnt; i++)
            out[i] = (float)((double)(int32_t)__builtin_bswap32(load_u32(src + 4 * i)) * scale);
    }
}

HOT static void deq_f64(const uint8_t *src, int64_t cnt, int8_t e, int shift, double *out) {
    double scale = deq_scale(e, shift);
    for (int64_t i = 0; i < cnt; i++)
        out[i] = (double)(int32_t)__builtin_bswap32(load_u32(src + 4 * i)) * scale;
}

HOT static void deq_i32(const uint8_t *src, int64_t cnt, int32_t *out) {
    for (int64_t i = 0; i < cnt; i++) out[i] = (int32_t)__builtin_bswap32(load_u32(src + 4 * i));
}

static inline int64_t chunk_len(int64_t n, uint32_t k, int64_t c) {
    int64_t left = n - c * (int64_t)k;
    return left < (int64_t)k ? left : (int64_t)k;
}

void cs_block_exponents(int32_t in_type, const void *in, int64_t n, uint32_t k, int8_t *out) {
    int64_t chunks = (n + k - 1) / k;
    for (int64_t c = 0; c < chunks; c++) {
        int64_t at = c * (int64_t)k, cnt = chunk_len(n, k, c);
        out[c] = in_type == CS_T_F64 ? block_exp_f64((const double *)in + at, cnt)
                                     : block_exp_f32((const float *)in + at, cnt);
    }
}

/* test entry points: whole arrays in host byte order (rows of k, the last one padded) */
void cs_quantize(int32_t in_type, const void *in, int64_t n, uint32_t k, const int8_t *exps,
                 int32_t shift, int32_t *out) {
    int64_t chunks = (n + k - 1) / k;
    for (int64_t c = 0; c < chunks; c++) {
        int64_t at = c * (int64_t)k, cnt = chunk_len(n, k, c);
        uint32_t *dst = (uint32_t *)out + at;
        if (in_type == CS_T_F64) quant_f64((const double *)in + at, cnt, k, exps[c], shift, dst);
        else quant_f32((const float *)in + at, cnt, k, exps[c], shift, dst);
        for (uint32_t i = 0; i < k; i++) dst[i] = __builtin_bswap32(dst[i]);
    }
}

void cs_dequantize(int32_t out_type, const int32_t *sums, int64_t n, uint32_t k,
                   const int8_t *exps, int32_t shift, void *out) {
    int64_t chunks = (n + k - 1) / k;
    uint32_t *be = malloc((size_t)k * 4);
    if (!be) return;
    for (int64_t c = 0; c < chunks; c++) {
        int64_t at = c * (int64_t)k, cnt = chunk_len(n, k, c);
        for (int64_t i = 0; i < cnt; i++) be[i] = __builtin_bswap32((uint32_t)sums[at + i]);
        if (out_type == CS_T_F64) deq_f64((const uint8_t *)be, cnt, exps[c], shift, (double *)out + at);
        else deq_f32((const uint8_t *)be, cnt, exps[c], shift, (float *)out + at);
    }
    free(be);
}

/* ---------------------------------------------------------------------------------- */
/* The window: per-slot timers and loss detection (worker/window.py decides the same).
 * Outstanding slots are in a list ordered by their latest send, so the RACK test walks
 * from the oldest send and stops at the first packet that is not late. */

typedef struct {
    double initial, min, max, srtt, rttvar, rto, last_backoff;
    int has_srtt;
} rto_t;

static void rto_init(rto_t *r, double initial, double min, double max) {
    memset(r, 0, sizeof *r);
    r->initial = initial; r->min = min; r->max = max; r->rto = initial;
    r->last_backoff = -INFINITY;
}

static void rto_sample(rto_t *r, double rtt) {
    if (!r->has_srtt) {
        r->srtt = rtt; r->rttvar = rtt / 2; r->has_srtt = 1;
    } else {
        r->rttvar = 0.75 * r->rttvar + 0.25 * fabs(r->srtt - rtt);
        r->srtt = 0.875 * r->srtt + 0.125 * rtt;
    }
    double v = r->srtt + 4 * r->rttvar;
    r->rto = v < r->min ? r->min : (v > r->max ? r->max : v);
}

static void rto_backoff(rto_t *r, double now) {
    if (now - r->last_backoff >= r->rto) {
        r->rto = 2 * r->rto < r->max ? 2 * r->rto : r->max;
        r->last_backoff = now;
    }
}

struct cs_window {
    uint32_t S;
    int64_t *idx;
    double *first, *last, *deadline, *srto;
    uint8_t *resent, *mark;
    int32_t *prev, *next;
    int32_t head, tail;
    uint32_t outstanding;
    double rack_time, rack_rtt, last_progress;
    rto_t rto;
};

void cs_win_free(cs_window *w) {
    if (!w) return;
    free(w->idx); free(w->first); free(w->last); free(w->deadline); free(w->srto);
    free(w->resent); free(w->mark); free(w->prev); free(w->next);
    free(w);
}

cs_window *cs_win_new(uint32_t S, double rto_initial, double rto_min, double rto_max) {
    if (S == 0) return NULL;
    cs_window *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->S = S;
    w->idx = malloc(S * sizeof *w->idx);
    w->first = calloc(S, sizeof *w->first);
    w->last = malloc(S * sizeof *w->last);
    w->deadline = malloc(S * sizeof *w->deadline);
    w->srto = calloc(S, sizeof *w->srto);
    w->resent = calloc(S, 1);
    w->mark = calloc(S, 1);
    w->prev = malloc(S * sizeof *w->prev);
    w->next = malloc(S * sizeof *w->next);
    if (!w->idx || !w->first || !w->last || !w->deadline || !w->srto || !w->resent ||
        !w->mark || !w->prev || !w->next) {
        cs_win_free(w);
        return NULL;
    }
    for (uint32_t s = 0; s < S; s++) {
        w->idx[s] = -1; w->last[s] = INFINITY; w->deadline[s] = INFINITY;
        w->prev[s] = w->next[s] = -1;
    }
    w->head = w->tail = -1;
    w->rack_time = -INFINITY;
    rto_init(&w->rto, rto_initial, rto_min, rto_max);
    return w;
}

static void list_unlink(cs_window *w, uint32_t s) {
    int32_t p = w->prev[s], n = w->next[s];
    if (p >= 0) w->next[p] = n; else w->head = n;
    if (n >= 0) w->prev[n] = p; else w->tail = p;
    w->prev[s] = w->next[s] = -1;
}

static void list_append(cs_window *w, uint32_t s) {
    w->prev[s] = w->tail;
    w->next[s] = -1;
    if (w->tail >= 0) w->next[w->tail] = (int32_t)s; else w->head = (int32_t)s;
    w->tail = (int32_t)s;
}

void cs_win_start(cs_window *w, double now) {
    w->rack_time = -INFINITY;
    w->rack_rtt = 0.0;
    w->last_progress = now;
}

void cs_win_sent(cs_window *w, uint32_t s, int64_t idx, double now) {
    if (s >= w->S || w->idx[s] >= 0) return;
    w->idx[s] = idx;
    w->first[s] = w->last[s] = now;
    w->deadline[s] = now + w->rto.rto;
    w->srto[s] = w->rto.rto;
    w->resent[s] = 0;
    list_append(w, s);
    w->outstanding++;
}

int64_t cs_win_acked(cs_window *w, uint32_t s, double now) {
    if (s >= w->S || w->idx[s] < 0) return -1;
    int64_t idx = w->idx[s];
    if (!w->resent[s]) { /* Karn: resent packets give no sample */
        rto_sample(&w->rto, now - w->first[s]);
        if (w->first[s] > w->rack_time) {
            w->rack_time = w->first[s];
            w->rack_rtt = now - w->first[s];
        }
    }
    list_unlink(w, s);
    w->idx[s] = -1;
    w->last[s] = w->deadline[s] = INFINITY;
    w->outstanding--;
    w->last_progress = now;
    return idx;
}

static inline double reorder_margin(const cs_window *w) {
    return w->rack_rtt / 4 > MIN_REORDER_S ? w->rack_rtt / 4 : MIN_REORDER_S;
}

uint32_t cs_win_due(cs_window *w, double now, uint32_t *out) {
    if (!w->outstanding) return 0;
    double reo = reorder_margin(w);
    uint32_t n = 0;
    for (int32_t s = w->head; s >= 0; s = w->next[s]) {
        if (!(w->last[s] < w->rack_time && now >= w->last[s] + w->rack_rtt + reo)) break;
        w->mark[s] = 1;
        out[n++] = (uint32_t)s;
    }
    if (now - w->last_progress >= w->rto.rto) {
        int any = 0;
        for (int32_t s = w->head; s >= 0; s = w->next[s]) {
            if (w->deadline[s] > now) continue;
            any = 1;
            w->srto[s] = 2 * w->srto[s] < w->rto.max ? 2 * w->srto[s] : w->rto.max;
            if (!w->mark[s]) {
                w->mark[s] = 1;
                out[n++] = (uint32_t)s;
            }
        }
        if (any) rto_backoff(&w->rto, now);
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = out[i];
        w->mark[s] = 0;
        w->resent[s] = 1;
        w->deadline[s] = now + w->srto[s];
        w->last[s] = now;
        list_unlink(w, s);
        list_append(w, s);
    }
    return n;
}

double cs_win_next(cs_window *w, double now) {
    if (!w->outstanding) return INFINITY;
    double oldest = w->last[w->head];
    double rack = oldest < w->rack_time ? oldest + w->rack_rtt + reorder_margin(w) : INFINITY;
    double tail = w->last_progress + w->rto.rto;
    if (tail <= now) {
        double dmin = INFINITY;
        for (int32_t s = w->head; s >= 0; s = w->next[s])
            if (w->deadline[s] < dmin) dmin = w->deadline[s];
        if (dmin > tail) tail = dmin;
    }
    return rack < tail ? rack : tail;
}

uint32_t cs_win_outstanding(cs_window *w) { return w->outstanding; }
double cs_win_rto(cs_window *w) { return w->rto.rto; }
double cs_win_srtt(cs_window *w) { return w->rto.has_srtt ? w->rto.srtt : -1.0; }
double cs_win_rack_rtt(cs_window *w) { return w->rack_rtt; }

/* ---------------------------------------------------------------------------------- */
/* The engine */

#define P_SENT 1
#define P_DONE 2

struct cs_engine {
    cs_config cfg;
    cs_state st;
    uint32_t S, K, row_len;
    uint8_t *rows;             /* S rows: the packet outstanding on each slot */
    cs_window *win;
    uint32_t *due;             /* S: scratch for cs_win_due */
    /* the call */
    int active, started;
    cs_call call;
    int64_t cf, ci, n_exp, m, n_done;  /* float and int chunks, exponent packets */
    uint64_t base;
    uint8_t *pkt; size_t pkt_cap;   /* P_SENT | P_DONE per packet */
    int32_t desc[CS_DESCRIPTOR_LANES];
    int desc_seen;
    double t0;
    int paced;
    /* candidates and sends of one batch */
    int64_t *cand; size_t cand_cap; size_t n_cand;
    uint32_t *send; size_t send_cap; size_t n_send;
    /* CS_IO_QUEUE outbox; CS_IO_QUEUE and CS_IO_ECHO inbox */
    uint32_t *outbox; size_t out_cap;
    uint8_t *inbox; size_t in_bytes_cap; size_t in_bytes;
    uint32_t *inlen; size_t inlen_cap; size_t in_count, in_next, in_at;
    /* CS_IO_FD */
    int gso;                   /* 1: send with UDP_SEGMENT (until the kernel refuses it) */
    struct mmsghdr *gmsg; struct iovec *giov; uint8_t *gcmsg;
    struct mmsghdr *smsg; struct iovec *siov;
    struct mmsghdr *rmsg; struct iovec *riov; uint8_t *rbuf;
};

cs_state *cs_state_of(cs_engine *e) { return &e->st; }
uint8_t *cs_rows(cs_engine *e) { return e->rows; }
uint32_t cs_row_len(cs_engine *e) { return e->row_len; }
uint32_t *cs_out_slots(cs_engine *e) { return e->outbox; }

void cs_free(cs_engine *e) {
    if (!e) return;
    free(e->rows); cs_win_free(e->win); free(e->due); free(e->pkt); free(e->cand);
    free(e->send); free(e->outbox); free(e->inbox); free(e->inlen);
    free(e->smsg); free(e->siov); free(e->rmsg); free(e->riov); free(e->rbuf);
    free(e->gmsg); free(e->giov); free(e->gcmsg);
    free(e);
}

cs_engine *cs_new(const cs_config *cfg) {
    if (cfg->slots == 0 || cfg->slots > 65535 || cfg->k == 0 || cfg->k > 256) return NULL;
    if (cfg->prefix_len > sizeof cfg->prefix || cfg->dest_len > sizeof cfg->dest) return NULL;
    if (cfg->io < CS_IO_FD || cfg->io > CS_IO_ECHO) return NULL;
    cs_engine *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->cfg = *cfg;
    e->S = cfg->slots;
    e->K = cfg->k;
    e->row_len = HDR_LEN + 4 * cfg->k;
    e->rows = calloc(e->S, e->row_len);
    e->win = cs_win_new(e->S, cfg->rto_initial, cfg->rto_min, cfg->rto_max);
    e->due = malloc(e->S * sizeof *e->due);
    if (!e->rows || !e->win || !e->due) goto fail;
    for (uint32_t s = 0; s < e->S; s++) { /* fields that never change */
        uint8_t *row = e->rows + (size_t)s * e->row_len;
        put16(row + 1, cfg->job_id);
        row[3] = cfg->rank;
        put16(row + 4, (uint16_t)s);
    }
    if (cfg->io == CS_IO_FD) {
        int niov = cfg->prefix_len ? 2 : 1;
        e->smsg = calloc(TX_BATCH, sizeof *e->smsg);
        e->siov = calloc((size_t)TX_BATCH * niov, sizeof *e->siov);
        e->rmsg = calloc(RX_BATCH, sizeof *e->rmsg);
        e->riov = calloc(RX_BATCH, sizeof *e->riov);
        e->rbuf = malloc((size_t)RX_BATCH * RX_SIZE);
        if (!e->smsg || !e->siov || !e->rmsg || !e->riov || !e->rbuf) goto fail;
        for (int i = 0; i < TX_BATCH; i++) {
            struct iovec *v = e->siov + (size_t)i * niov;
            if (cfg->prefix_len) {
                v[0].iov_base = e->cfg.prefix;
                v[0].iov_len = cfg->prefix_len;
            }
            e->smsg[i].msg_hdr.msg_name = e->cfg.dest;
            e->smsg[i].msg_hdr.msg_namelen = cfg->dest_len;
            e->smsg[i].msg_hdr.msg_iov = v;
            e->smsg[i].msg_hdr.msg_iovlen = niov;
        }
        e->gmsg = calloc(GSO_MSGS, sizeof *e->gmsg);
        e->giov = calloc((size_t)GSO_MSGS * GSO_SEGS * niov, sizeof *e->giov);
        e->gcmsg = calloc(GSO_MSGS, CMSG_SPACE(sizeof(uint16_t)));
        if (!e->gmsg || !e->giov || !e->gcmsg) goto fail;
        for (int m = 0; m < GSO_MSGS; m++) {
            struct msghdr *h = &e->gmsg[m].msg_hdr;
            h->msg_name = e->cfg.dest;
            h->msg_namelen = cfg->dest_len;
            h->msg_iov = e->giov + (size_t)m * GSO_SEGS * niov;
            h->msg_control = e->gcmsg + (size_t)m * CMSG_SPACE(sizeof(uint16_t));
            h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
            struct cmsghdr *c = CMSG_FIRSTHDR(h);
            c->cmsg_level = IPPROTO_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t seg = (uint16_t)(cfg->prefix_len + e->row_len);
            memcpy(CMSG_DATA(c), &seg, sizeof seg);
        }
        e->gso = cfg->gso != 0;
        for (int i = 0; i < RX_BATCH; i++) {
            e->riov[i].iov_base = e->rbuf + (size_t)i * RX_SIZE;
            e->riov[i].iov_len = RX_SIZE;
            e->rmsg[i].msg_hdr.msg_iov = e->riov + i;
            e->rmsg[i].msg_hdr.msg_iovlen = 1;
        }
    }
    e->st.srtt = -1.0;
    e->st.rto = cfg->rto_initial;
    return e;
fail:
    cs_free(e);
    return NULL;
}

/* ---- inbox (queue and echo modes) ---- */

/* Datagrams are stored back to back, each followed by GAP bytes (ASan builds poison
 * them and the unused tail: see inbox_poison). */
static int inbox_push(cs_engine *e, const uint8_t *data, uint32_t len, uint8_t or_flags) {
    uint8_t *b = grow(e->inbox, &e->in_bytes_cap, e->in_bytes + len + GAP + 1, 1);
    if (!b) return -1;
    e->inbox = b;
    uint32_t *l = grow(e->inlen, &e->inlen_cap, e->in_count + 1, sizeof *l);
    if (!l) return -1;
    e->inlen = l;
    memcpy(e->inbox + e->in_bytes, data, len);
    if (len) e->inbox[e->in_bytes] |= or_flags;
    e->in_bytes += len + GAP;
    e->inlen[e->in_count++] = len;
    return 0;
}

static void inbox_unpoison(cs_engine *e) {
    if (e->inbox) ASAN_UNPOISON_MEMORY_REGION(e->inbox, e->in_bytes_cap);
}

static void inbox_poison(cs_engine *e) {
#if defined(__SANITIZE_ADDRESS__)
    if (!e->inbox) return;
    size_t at = 0;
    for (size_t i = 0; i < e->in_count; i++) {
        at += e->inlen[i];
        ASAN_POISON_MEMORY_REGION(e->inbox + at, GAP);
        at += GAP;
    }
    ASAN_POISON_MEMORY_REGION(e->inbox + at, e->in_bytes_cap - at);
#else
    (void)e;
#endif
}

static void inbox_reset_if_empty(cs_engine *e) {
    if (e->in_next == e->in_count) e->in_count = e->in_next = e->in_bytes = e->in_at = 0;
}

int cs_feed(cs_engine *e, const uint8_t *data, const uint32_t *lens, uint32_t count) {
    inbox_reset_if_empty(e);
    inbox_unpoison(e);
    size_t at = 0;
    int rc = 0;
    for (uint32_t i = 0; i < count && !rc; i++) {
        rc = inbox_push(e, data + at, lens[i], 0);
        at += lens[i];
    }
    inbox_poison(e);
    return rc;
}

/* ---- the plan: which packets a call sends and what their results mean ----
 *
 * (worker/plans.py and docs/WIRE.md describe the same.) Packets 0..n_exp-1 are exponent
 * packets (EXP_ONLY: the switch keeps the larger value of each lane): lane g of the
 * call's lane stream (packet g / K, lane g % K) is descriptor lane g for g < D, the
 * proposal of float chunk g - D (sign-extended) for g < D + cf, else EXP_ZERO. Packet
 * n_exp + c is float chunk c (quantized with its agreed exponent, waiting for exponent
 * packet (D + c) / K); packet n_exp + cf + c is int chunk c (waiting for nothing). */

#define D CS_DESCRIPTOR_LANES

static inline int64_t plan_dep(const cs_engine *e, int64_t i) {
    if (i < e->n_exp || i >= e->n_exp + e->cf) return -1;
    return (D + i - e->n_exp) / e->K;
}

static inline int pkt_done(const cs_engine *e, int64_t i) { return i < 0 || (e->pkt[i] & P_DONE); }

static inline int plan_ready(const cs_engine *e, int64_t i) {
    return !(e->pkt[i] & P_SENT) && pkt_done(e, i - e->S) && pkt_done(e, plan_dep(e, i));
}

/* Exponent lanes are order-encoded (docs/WIRE.md): bit-reverse(v ^ 2^31), so that the
 * switch finds the larger of two by the lowest bit in which they differ. */
static inline uint32_t rev32(uint32_t x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
    return __builtin_bswap32(x);
}
static inline uint32_t order_encode(int32_t v) { return rev32((uint32_t)v ^ 0x80000000u); }
static inline int32_t order_decode(uint32_t lane) { return (int32_t)(rev32(lane) ^ 0x80000000u); }

static inline int32_t exp_lane(const cs_engine *e, int64_t g) {
    if (g < D) return e->desc[g];
    if (g < D + e->cf) return e->call.proposals[g - D];
    return EXP_ZERO;
}

static void plan_build(cs_engine *e, int64_t i, uint8_t *row) {
    const cs_call *c = &e->call;
    uint32_t K = e->K;
    uint32_t *lanes = (uint32_t *)(row + HDR_LEN);
    uint8_t flags = 0;
    int64_t offset;
    int8_t exp = 0;
    if (i < e->n_exp) {
        flags = F_EXP_ONLY;
        offset = i * (int64_t)K;
        exp = EXP_ZERO;
        for (uint32_t l = 0; l < K; l++)
            lanes[l] = __builtin_bswap32(order_encode(exp_lane(e, offset + l)));
    } else if (i < e->n_exp + e->cf) {
        int64_t ch = i - e->n_exp, at = ch * (int64_t)K, cnt = chunk_len(c->n_f, K, ch);
        offset = at;
        exp = c->agreed[ch];
        if (c->f_in_type == CS_T_F64)
            quant_f64((const double *)c->f_in + at, cnt, K, exp, c->shift, lanes);
        else
            quant_f32((const float *)c->f_in + at, cnt, K, exp, c->shift, lanes);
    } else {
        int64_t ch = i - e->n_exp - e->cf, at = ch * (int64_t)K;
        offset = (e->cf + ch) * (int64_t)K;
        copy_i32(c->i_in + at, chunk_len(c->n_i, K, ch), K, lanes);
    }
    row[0] = flags;
    put32(row + 7, (uint32_t)offset);
    row[11] = (uint8_t)exp;
}

/* a result of packet i (checked to be the one outstanding); returns a CS_ error or 0 */
static int plan_result(cs_engine *e, int64_t i, const uint8_t *p) {
    const cs_call *c = &e->call;
    uint32_t K = e->K;
    const uint8_t *lanes = p + HDR_LEN;
    if (i < e->n_exp) {
        int64_t at = i * (int64_t)K;
        for (uint32_t l = 0; l < K; l++) {
            int64_t g = at + l;
            int32_t v = order_decode(get32(lanes + 4 * l));
            if (g < D) {
                e->st.desc_got[g] = v;
                if (++e->desc_seen == D) {
                    for (int j = 0; j < D; j++)
                        if (e->st.desc_got[j] != e->desc[j]) return CS_DESCRIPTOR;
                }
            } else if (g < D + e->cf) {
                c->agreed[g - D] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
            } else {
                break;
            }
        }
        return 0;
    }
    if (i < e->n_exp + e->cf) {
        int64_t ch = i - e->n_exp, at = ch * (int64_t)K, cnt = chunk_len(c->n_f, K, ch);
        if (c->f_out_type == CS_T_F64)
            deq_f64(lanes, cnt, c->agreed[ch], c->shift, (double *)c->f_out + at);
        else
            deq_f32(lanes, cnt, c->agreed[ch], c->shift, (float *)c->f_out + at);
        return 0;
    }
    int64_t ch = i - e->n_exp - e->cf;
    deq_i32(lanes, chunk_len(c->n_i, K, ch), c->i_out + ch * (int64_t)K);
    return 0;
}

static int push_cand(cs_engine *e, int64_t i) {
    if (i < 0 || i >= e->m) return 0;
    int64_t *c = grow(e->cand, &e->cand_cap, e->n_cand + 1, sizeof *c);
    if (!c) return -1;
    e->cand = c;
    e->cand[e->n_cand++] = i;
    return 0;
}

/* packets that may have waited for packet j: its slot's next user, and, for an exponent
 * packet, the float chunks whose proposals it carried */
static void plan_dependents(cs_engine *e, int64_t j) {
    push_cand(e, j + e->S);
    if (j >= e->n_exp) return;
    int64_t lo = j * (int64_t)e->K - D, hi = lo + e->K;
    if (lo < 0) lo = 0;
    if (hi > e->cf) hi = e->cf;
    for (int64_t ch = lo; ch < hi; ch++) push_cand(e, e->n_exp + ch);
}

int cs_begin(cs_engine *e, const cs_call *call) {
    double t0 = mono();
    if (call->n_f < 0 || call->n_i < 0 || call->world < 1 || call->timeout_s <= 0) return -1;
    if ((call->f_in_type != CS_T_F32 && call->f_in_type != CS_T_F64) ||
        (call->f_out_type != CS_T_F32 && call->f_out_type != CS_T_F64))
        return -1;
    if (call->n_f && (!call->f_in || !call->f_out || !call->proposals || !call->agreed))
        return -1;
    if (call->n_i && (!call->i_in || !call->i_out)) return -1;
    e->call = *call;
    int64_t K = e->K;
    e->cf = (call->n_f + K - 1) / K;
    e->ci = (call->n_i + K - 1) / K;
    e->n_exp = call->n_f || call->n_i ? (D + e->cf + K - 1) / K : 0;
    e->m = e->n_exp ? e->n_exp + e->cf + e->ci : 0;
    uint8_t *p = grow(e->pkt, &e->pkt_cap, (size_t)e->m + 1, 1);
    if (!p) return -2;  /* out of memory (-1: a call the engine refuses) */
    e->pkt = p;
    memset(e->pkt, 0, (size_t)e->m + 1);
    int64_t nf = call->n_f, ni = call->n_i;
    int32_t v[3] = {(int32_t)(nf & 0x7FFFFFFF), (int32_t)(ni & 0x7FFFFFFF),
                    (int32_t)((((nf >> 31) & 0x7FFF) << 16) | ((ni >> 31) & 0x7FFF))};
    for (int j = 0; j < 3; j++) {
        e->desc[2 * j] = v[j];
        e->desc[2 * j + 1] = ~v[j];
    }
    e->desc_seen = 0;
    if (nf) {
        cs_block_exponents(call->f_in_type, call->f_in, nf, e->K, call->proposals);
        memset(call->agreed, EXP_ZERO, (size_t)e->cf);
    }
    cs_state *st = &e->st;
    st->sent = st->retransmitted = st->duplicates = st->bad = 0;
    st->elapsed = st->waited = 0;
    st->out_count = 0;
    e->in_count = e->in_next = e->in_bytes = e->in_at = 0;
    /* slots a failed call left outstanding are forgotten: after a switch restart
     * (restart_at) the next call must not resend them (window.py's Window.start, the same) */
    cs_window *w = e->win;
    for (int32_t s = w->head; s >= 0; s = w->head) {
        list_unlink(w, (uint32_t)s);
        w->idx[s] = -1;
        w->last[s] = w->deadline[s] = INFINITY;
    }
    w->outstanding = 0;
    e->n_done = 0;
    e->n_cand = 0; /* a failed call may have left candidates of its own */
    e->base = st->seq;
    if (e->base + (uint64_t)e->m > st->high) /* a failed call may have sent up to here */
        st->high = e->base + (uint64_t)e->m;
    e->paced = 0;
    e->t0 = t0;
    cs_win_start(e->win, mono());
    e->active = 1;
    e->started = 0;
    return 0;
}

#undef D

/* ---- I/O ---- */

/* Send with UDP segmentation offload: GSO_SEGS datagrams of equal size per message (the
 * tunnel's frame header and the row as two I/O vectors each), the kernel cutting them
 * apart, which costs it one pass through the stack per message instead of per datagram.
 * Returns how many datagrams were handled; a kernel or device that refuses it turns it
 * off, and the caller sends the rest one datagram per message. */
static size_t send_gso(cs_engine *e, const uint32_t *slots, size_t n) {
    int niov = e->cfg.prefix_len ? 2 : 1;
    size_t seg = e->cfg.prefix_len + e->row_len;
    size_t per = 65000 / seg < GSO_SEGS ? 65000 / seg : GSO_SEGS;
    size_t done = 0;
    while (done < n) {
        int msgs = 0;
        size_t at = done;
        for (; msgs < GSO_MSGS && at < n; msgs++) {
            size_t cnt = n - at < per ? n - at : per;
            struct msghdr *h = &e->gmsg[msgs].msg_hdr;
            for (size_t i = 0; i < cnt; i++) {
                struct iovec *v = h->msg_iov + i * niov;
                if (niov == 2) {
                    v->iov_base = e->cfg.prefix;
                    v->iov_len = e->cfg.prefix_len;
                    v++;
                }
                v->iov_base = e->rows + (size_t)slots[at + i] * e->row_len;
                v->iov_len = e->row_len;
            }
            h->msg_iovlen = cnt * niov;
            at += cnt;
        }
        int got = sendmmsg(e->cfg.fd, e->gmsg, (unsigned)msgs, MSG_DONTWAIT);
        if (got <= 0 && (errno == EINVAL || errno == EIO || errno == ENOPROTOOPT ||
                         errno == EOPNOTSUPP)) {
            e->gso = 0; /* not here: one datagram per message from now on */
            return done;
        }
        /* what the kernel took; a refused message (full buffer) is lost packets, which
         * the timers resend */
        int took = got > 0 ? got : 1;
        for (int m = 0; m < took; m++) done += e->gmsg[m].msg_hdr.msg_iovlen / niov;
    }
    return done;
}

static void io_send(cs_engine *e, const uint32_t *slots, size_t n) {
    if (!n) return;
    e->st.sent += (int64_t)n;
    if (e->cfg.io == CS_IO_QUEUE) {
        uint32_t *o = grow(e->outbox, &e->out_cap, e->st.out_count + n, sizeof *o);
        if (!o) return; /* out of memory: as lost packets, which the timers resend */
        e->outbox = o;
        memcpy(o + e->st.out_count, slots, n * sizeof *slots);
        e->st.out_count += (uint32_t)n;
        return;
    }
    if (e->cfg.io == CS_IO_ECHO) {
        inbox_unpoison(e);
        for (size_t i = 0; i < n; i++)
            inbox_push(e, e->rows + (size_t)slots[i] * e->row_len, e->row_len, F_RESULT);
        inbox_poison(e);
        return;
    }
    size_t done = e->gso ? send_gso(e, slots, n) : 0;
    int body = e->cfg.prefix_len ? 1 : 0;
    while (done < n) {
        size_t k = n - done < TX_BATCH ? n - done : TX_BATCH;
        for (size_t i = 0; i < k; i++) {
            struct iovec *v = e->smsg[i].msg_hdr.msg_iov + body;
            v->iov_base = e->rows + (size_t)slots[done + i] * e->row_len;
            v->iov_len = e->row_len;
        }
        int got = sendmmsg(e->cfg.fd, e->smsg, (unsigned)k, MSG_DONTWAIT);
        /* a refused datagram (full buffer, unreachable) is a lost packet, which the
         * timers resend: skip it and go on */
        done += got > 0 ? (size_t)got : 1;
    }
}

/* the aggregation payload of a datagram, or NULL (counted as bad) */
static const uint8_t *payload_of(cs_engine *e, const uint8_t *d, uint32_t len) {
    if (e->cfg.framing == CS_FRAME_ETH) {
        if (len < FRAME_OVERHEAD || d[12] != 0x08 || d[13] != 0x00) return NULL;
        uint32_t ihl = (uint32_t)(d[14] & 0x0F) * 4;
        if (d[14] >> 4 != 4 || ihl < 20 || d[ETH_LEN + 9] != 17) return NULL;
        uint32_t at = ETH_LEN + ihl;
        if (len < at + 8 || get16(d + at + 2) != e->cfg.rx_port) return NULL;
        /* a tunnel port hands on any frame the switch forwards: only the aggregation
           address may answer (TunnelTransport._from_switch, the same check) */
        if (memcmp(d + ETH_LEN + 12, e->cfg.rx_src_ip, 4) || get16(d + at) != e->cfg.rx_src_port) return NULL;
        uint32_t ulen = get16(d + at + 4);
        if (ulen < 8 + e->row_len || at + ulen > len) return NULL;
        return d + at + 8;
    }
    return len >= e->row_len ? d : NULL;
}

/* receive what is queued (never blocking) into rmsg[first..]: datagram i is at
 * rbuf + i * RX_SIZE, msg_len bytes long */
static uint32_t io_recv(cs_engine *e, uint32_t first) {
    ASAN_UNPOISON_MEMORY_REGION(e->rbuf + (size_t)first * RX_SIZE,
                                (size_t)(RX_BATCH - first) * RX_SIZE);
    int got = recvmmsg(e->cfg.fd, e->rmsg + first, RX_BATCH - first, MSG_DONTWAIT, NULL);
    for (int i = 0; i < got; i++) {
        uint32_t len = e->rmsg[first + i].msg_len;
        ASAN_POISON_MEMORY_REGION(e->rbuf + (size_t)(first + i) * RX_SIZE + len, RX_SIZE - len);
    }
    return got > 0 ? (uint32_t)got : 0;
}

static int io_wait(cs_engine *e, double wait) {
    if (wait <= 0) return 0;
    struct pollfd p = {.fd = e->cfg.fd, .events = POLLIN};
    struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
    return ppoll(&p, 1, &ts, NULL);
}

/* ---- the loop ---- */

static int handle(cs_engine *e, const uint8_t *d, uint32_t len, double now) {
    const uint8_t *p = payload_of(e, d, len);
    if (!p) {
        e->st.bad++;
        return 0;
    }
    uint16_t slot = get16(p + 4);
    if (slot >= e->S || e->win->idx[slot] < 0) {
        e->st.duplicates++;
        return 0;
    }
    const uint8_t *row = e->rows + (size_t)slot * e->row_len;
    uint8_t flags = p[0];
    int same = (flags & F_RESULT) && p[1] == row[1] && p[2] == row[2] && p[6] == row[6];
    if (!same || (flags & F_EXP_ONLY) != (row[0] & F_EXP_ONLY) || memcmp(p + 7, row + 7, 4)) {
        if (same) { /* the packet this rank sent, answered at another offset or kind */
            cs_state *st = &e->st;
            st->err_slot = slot;
            st->err_round = p[6];
            st->err_offset = get32(p + 7);
            st->err_exp_only = (flags & F_EXP_ONLY) != 0;
            st->err_want_offset = get32(row + 7);
            st->err_want_exp_only = (row[0] & F_EXP_ONLY) != 0;
            return CS_MISMATCH;
        }
        e->st.duplicates++;
        return 0;
    }
    int64_t i = cs_win_acked(e->win, slot, now);
    if (i < 0 || i >= e->m) return 0; /* cannot happen: only this call's packets are out */
    e->pkt[i] |= P_DONE;
    e->n_done++;
    int rc = plan_result(e, i, p);
    if (rc) return rc;
    plan_dependents(e, i);
    return 0;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* build and send the candidates that are ready (ascending: chunks in order) */
static void send_ready(cs_engine *e) {
    if (!e->n_cand) return;
    if (e->n_cand > 1) qsort(e->cand, e->n_cand, sizeof *e->cand, cmp_i64);
    uint32_t *s = grow(e->send, &e->send_cap, e->n_cand, sizeof *s);
    if (!s) { e->n_cand = 0; return; }
    e->send = s;
    size_t n = 0;
    double now = mono();
    for (size_t c = 0; c < e->n_cand; c++) {
        int64_t i = e->cand[c];
        if (i < 0 || i >= e->m || !plan_ready(e, i)) continue;
        uint64_t g = e->base + (uint64_t)i;
        uint32_t slot = (uint32_t)(g % e->S);
        uint8_t *row = e->rows + (size_t)slot * e->row_len;
        plan_build(e, i, row);
        row[6] = (uint8_t)((g / e->S) & 0xFF);
        e->pkt[i] |= P_SENT;
        cs_win_sent(e->win, slot, i, now);
        s[n++] = slot;
    }
    e->n_cand = 0;
    io_send(e, s, n);
}

static void resend_due(cs_engine *e, double now) {
    uint32_t n = cs_win_due(e->win, now, e->due);
    for (uint32_t i = 0; i < n; i++) e->rows[(size_t)e->due[i] * e->row_len] |= F_RETRANSMIT;
    e->st.retransmitted += n;
    io_send(e, e->due, n);
}

static int finish(cs_engine *e) {
    e->st.seq = e->base + (uint64_t)e->m;
    e->st.elapsed = mono() - e->t0;
    e->active = 0;
    return CS_DONE;
}

static int fail(cs_engine *e, int rc) {
    e->active = 0;
    return rc;
}

/* how long the loop may block waiting for input: until the window's next timer or the
 * call's timeout, and at most MAX_WAIT_S */
static double wait_for(cs_engine *e, double now) {
    cs_window *w = e->win;
    double until = cs_win_next(w, now);
    double limit = w->last_progress + e->call.timeout_s;
    double wait = (limit < until ? limit : until) - now;
    return wait > MAX_WAIT_S ? MAX_WAIT_S : (wait < 0 ? 0 : wait);
}

static int timed_out(cs_engine *e, double now) {
    if (e->n_done == e->m || now - e->win->last_progress <= e->call.timeout_s) return 0;
    e->st.waited = now - e->win->last_progress;
    return 1;
}

/* the results in the inbox (queue and echo modes) */
static int take_inbox(cs_engine *e) {
    inbox_reset_if_empty(e);
    double t = mono();
    size_t stop = e->in_count; /* echoes of what this batch sends come after it */
    for (; e->in_next < stop; e->in_next++) {
        uint32_t len = e->inlen[e->in_next];
        const uint8_t *d = e->inbox + e->in_at;
        e->in_at += len + GAP;
        int rc = handle(e, d, len, t);
        if (rc) return rc;
    }
    return 0;
}

/* receive from the socket: what is queued, else wait up to `wait` for something */
static int take_socket(cs_engine *e, double wait, uint32_t gather) {
    cs_window *w = e->win;
    if (e->paced && w->outstanding >= 2 * gather && w->rto.has_srtt) {
        /* the last batch was small and plenty is in flight: let results queue up before
         * looking, rather than be woken by the next one alone (on a shared host the
         * wake-ups would take the CPU from the switch) */
        double pause = w->rto.srtt * 0.125;
        pause = pause < 1e-4 ? 1e-4 : (pause > 1e-3 ? 1e-3 : pause);
        sleep_s(pause < wait ? pause : wait);
        wait = 0;
    }
    uint32_t n = io_recv(e, 0);
    if (!n && io_wait(e, wait) > 0) n = io_recv(e, 0);
    e->paced = n < gather;
    double t = mono();
    for (uint32_t r = 0; r < n; r++) {
        int rc = handle(e, e->rbuf + (size_t)r * RX_SIZE, e->rmsg[r].msg_len, t);
        if (rc) return rc;
    }
    return 0;
}

int cs_run(cs_engine *e, double slice_s) {
    if (!e->active) return CS_DONE;
    cs_window *w = e->win;
    cs_state *st = &e->st;
    double now = mono(), end = now + slice_s;
    uint32_t gather = e->S / 4 < 16 ? e->S / 4 : 16;
    if (gather < 1) gather = 1;
    if (!e->started) {
        e->started = 1;
        for (int64_t i = 0; i < e->m && i < e->S; i++) push_cand(e, i);
        send_ready(e);
    }
    for (;;) {
        if (e->n_done == e->m) return finish(e);
        now = mono();
        st->srtt = w->rto.has_srtt ? w->rto.srtt : -1.0;
        st->rto = w->rto.rto;
        if (timed_out(e, now)) return fail(e, CS_TIMEOUT);
        int rc;
        if (e->cfg.io == CS_IO_FD) {
            if (now >= end) return CS_SLICE;
            double wait = wait_for(e, now);
            rc = take_socket(e, end - now < wait ? end - now : wait, gather);
        } else {
            if (e->cfg.io == CS_IO_ECHO) {
                if (now >= end) return CS_SLICE;
                if (e->in_next == e->in_count) sleep_s(wait_for(e, now)); /* nothing in flight */
            }
            rc = take_inbox(e);
        }
        if (rc) return fail(e, rc);
        /* successors only after the whole batch: their inputs (exponents) then arrive
         * together */
        send_ready(e);
        now = mono();
        resend_due(e, now);
        if (timed_out(e, now)) return fail(e, CS_TIMEOUT);
        if (e->cfg.io == CS_IO_QUEUE) {
            if (e->n_done == e->m) return finish(e);
            st->wait_s = wait_for(e, now);
            return CS_IO;
        }
    }
}

uint32_t cs_stuck(cs_engine *e, int32_t *slots, int32_t *rounds, uint32_t max) {
    uint32_t n = 0;
    for (uint32_t s = 0; s < e->S && n < max; s++) {
        int64_t i = e->win->idx[s];
        if (i < 0) continue;
        slots[n] = (int32_t)s;
        rounds[n] = (int32_t)(((e->base + (uint64_t)i) / e->S) & 0xFF);
        n++;
    }
    return n;
}

/* ---------------------------------------------------------------------------------- */
/* A minimal switch stand-in for benchmarks: every aggregation datagram back to its sender
 * as its own result (a one-worker job), tunnel frames with their addresses swapped. Runs
 * until *stop is nonzero or `seconds` passed; returns how many it answered. */

int64_t cs_echo_serve(int32_t fd, int32_t framing, double seconds, int32_t *stop) {
    enum { B = 256, SZ = 2048 };
    struct mmsghdr *msg = calloc(B, sizeof *msg);
    struct iovec *iov = calloc(B, sizeof *iov);
    struct sockaddr_storage *peer = calloc(B, sizeof *peer);
    uint8_t *buf = malloc((size_t)B * SZ);
    int64_t answered = 0;
    if (!msg || !iov || !peer || !buf) goto out;
    double end = mono() + seconds;
    while (!__atomic_load_n(stop, __ATOMIC_RELAXED) && mono() < end) {
        for (int i = 0; i < B; i++) {
            iov[i].iov_base = buf + (size_t)i * SZ;
            iov[i].iov_len = SZ;
            msg[i].msg_hdr.msg_iov = iov + i;
            msg[i].msg_hdr.msg_iovlen = 1;
            msg[i].msg_hdr.msg_name = peer + i;
            msg[i].msg_hdr.msg_namelen = sizeof *peer;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        struct timespec ts = {0, 20 * 1000 * 1000};
        if (ppoll(&p, 1, &ts, NULL) <= 0) continue;
        int got = recvmmsg(fd, msg, B, MSG_DONTWAIT, NULL);
        if (got <= 0) continue;
        int keep = 0;
        for (int i = 0; i < got; i++) {
            uint8_t *d = buf + (size_t)i * SZ;
            uint32_t len = msg[i].msg_len, at = 0;
            if (framing == CS_FRAME_ETH) {
                if (len < FRAME_OVERHEAD + HDR_LEN || d[14] != 0x45) continue;
                uint8_t t[6];
                memcpy(t, d, 6); memcpy(d, d + 6, 6); memcpy(d + 6, t, 6);
                memcpy(t, d + 26, 4); memcpy(d + 26, d + 30, 4); memcpy(d + 30, t, 4);
                memcpy(t, d + 34, 2); memcpy(d + 34, d + 36, 2); memcpy(d + 36, t, 2);
                at = FRAME_OVERHEAD;
            } else if (len < HDR_LEN) {
                continue;
            }
            d[at] |= F_RESULT;
            iov[i].iov_len = len;
            if (keep != i) {
                msg[keep] = msg[i];
                msg[keep].msg_hdr.msg_iov = iov + i;
            }
            keep++;
        }
        int sent = 0;
        while (sent < keep) {
            int r = sendmmsg(fd, msg + sent, (unsigned)(keep - sent), MSG_DONTWAIT);
            sent += r > 0 ? r : 1;
        }
        answered += keep;
    }
out:
    free(msg); free(iov); free(peer); free(buf);
    return answered;
}
