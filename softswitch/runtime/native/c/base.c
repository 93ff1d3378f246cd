/* softswitch native backend: the program-independent part that comes before the
 * generated code (types, helpers, hashes, match tables, deferred reclamation, events).
 *
 * Concurrency model. Packets are processed by one thread at a time (sw->mu, taken once
 * per batch, never per packet). Control-plane writes never take that lock: every
 * structure a packet reads (table entries, hash slot arrays, LPM level lists, multicast
 * groups, clone sessions, action data, default actions) is published with a release
 * store and read with an acquire load, and whatever a write unlinks is freed only after
 * the batch that might still see it has ended (epoch-based reclamation: a batch records
 * the epoch it started in, a retired object remembers the epoch it was retired in).
 * Writers serialise among themselves on sw->wmu. A write is therefore O(1) amortised
 * (O(log n) for priority tables), and visible to every batch that starts after the write
 * returned. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <pthread.h>

typedef unsigned __int128 u128;
typedef __int128 s128;

/* Functions with lane loops (parsing, deparsing and running K lanes) get an AVX2 clone,
 * chosen at load time where the CPU has it: the cached object stays portable and the
 * byte-swapping lane copies run four times faster. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define LANES_FN __attribute__((target_clones("avx2", "default")))
#else
#define LANES_FN
#endif

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define U128(hi, lo) ((((u128)(uint64_t)(hi)) << 64) | (u128)(uint64_t)(lo))
#define ACQ(x) atomic_load_explicit(&(x), memory_order_acquire)
#define REL(x, v) atomic_store_explicit(&(x), (v), memory_order_release)

/* ---- integer helpers with P4 semantics (Python's unbounded ints, masked) ---------- */
static inline int64_t sx64(uint64_t a, unsigned w) { return w >= 64 ? (int64_t)a : (int64_t)(a << (64 - w)) >> (64 - w); }
static inline s128 sx128(u128 a, unsigned w) { return w >= 128 ? (s128)a : (s128)(a << (128 - w)) >> (128 - w); }
static inline uint64_t shr64(uint64_t a, u128 b) { return b >= 64 ? 0 : a >> (unsigned)b; }
static inline u128 shr128(u128 a, u128 b) { return b >= 128 ? 0 : a >> (unsigned)b; }
static inline uint64_t shl64(uint64_t a, u128 b, unsigned w, uint64_t m) { return b >= w ? 0 : (a << (unsigned)b) & m; }
static inline u128 shl128(u128 a, u128 b, unsigned w, u128 m) { return b >= w ? 0 : (a << (unsigned)b) & m; }
static inline uint64_t sar64(uint64_t a, u128 b, unsigned w, uint64_t m) {
    int64_t s = sx64(a, w);
    unsigned n = b > w ? w : (unsigned)b;
    return (uint64_t)(n >= 64 ? (s < 0 ? -1 : 0) : s >> n) & m;
}
static inline u128 sar128(u128 a, u128 b, unsigned w, u128 m) {
    s128 s = sx128(a, w);
    unsigned n = b > w ? w : (unsigned)b;
    return (u128)(n >= 128 ? (s < 0 ? -1 : 0) : s >> n) & m;
}
static inline uint64_t div64(uint64_t a, uint64_t b) { return b ? a / b : 0; }
static inline uint64_t mod64(uint64_t a, uint64_t b) { return b ? a % b : 0; }
static inline u128 div128(u128 a, u128 b) { return b ? a / b : 0; }
static inline u128 mod128(u128 a, u128 b) { return b ? a % b : 0; }
static inline uint64_t usat_add64(uint64_t a, uint64_t b, uint64_t m) {
    uint64_t r;
    if (__builtin_add_overflow(a, b, &r) || r > m) return m;
    return r;
}
static inline u128 usat_add128(u128 a, u128 b, u128 m) {
    u128 r = a + b;
    if (r < a || r > m) return m;
    return r;
}
/* signed saturation: both operands are w-bit two's complement (w <= 127 for u128) */
static inline u128 ssat(u128 a, u128 b, unsigned w, int sign) {
    s128 r = sign > 0 ? sx128(a, w) + sx128(b, w) : sx128(a, w) - sx128(b, w);
    s128 lo = -((s128)1 << (w - 1)), hi = ((s128)1 << (w - 1)) - 1;
    if (r < lo) r = lo;
    if (r > hi) r = hi;
    return (u128)r & (w >= 128 ? ~(u128)0 : (((u128)1 << w) - 1));
}

/* big-endian loads and stores of n bytes (n <= 8, or <= 16 for the 128-bit ones) */
static inline uint64_t ld_be(const uint8_t *q, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v = (v << 8) | q[i];
    return v;
}
static inline u128 ld_be128(const uint8_t *q, unsigned n) {
    u128 v = 0;
    for (unsigned i = 0; i < n; i++) v = (v << 8) | q[i];
    return v;
}
static inline void st_be(uint8_t *q, uint64_t v, unsigned n) {
    for (unsigned i = n; i-- > 0;) { q[i] = (uint8_t)v; v >>= 8; }
}
static inline void st_be128(uint8_t *q, u128 v, unsigned n) {
    for (unsigned i = n; i-- > 0;) { q[i] = (uint8_t)v; v >>= 8; }
}
static inline uint16_t ld16(const uint8_t *q) { uint16_t v; memcpy(&v, q, 2); return __builtin_bswap16(v); }
static inline uint32_t ld32(const uint8_t *q) { uint32_t v; memcpy(&v, q, 4); return __builtin_bswap32(v); }
static inline uint64_t ld64(const uint8_t *q) { uint64_t v; memcpy(&v, q, 8); return __builtin_bswap64(v); }
static inline void st16(uint8_t *q, uint16_t v) { v = __builtin_bswap16(v); memcpy(q, &v, 2); }
static inline void st32(uint8_t *q, uint32_t v) { v = __builtin_bswap32(v); memcpy(q, &v, 4); }
static inline void st64(uint8_t *q, uint64_t v) { v = __builtin_bswap64(v); memcpy(q, &v, 8); }

/* ---- hash data: fields packed MSB first from bit 0 of a zeroed buffer ---------------- */
typedef struct { uint8_t *b; uint32_t bits; } rt_bw;
static inline void bw_put(rt_bw *w, u128 v, unsigned n) {
    if (!(w->bits & 7) && !(n & 7)) {
        st_be128(w->b + (w->bits >> 3), v, n >> 3);
        w->bits += n;
        return;
    }
    while (n) {
        unsigned pos = w->bits & 7, room = 8 - pos, take = n < room ? n : room;
        uint8_t chunk = (uint8_t)((v >> (n - take)) & ((1u << take) - 1));
        w->b[w->bits >> 3] |= (uint8_t)(chunk << (room - take));
        w->bits += take;
        n -= take;
    }
}

/* ---- hash and checksum algorithms, over the concatenation of two segments ----------- */
enum { H_CRC32, H_CRC16, H_CSUM16, H_XOR16, H_IDENTITY, H_RANDOM };
static uint32_t crc32_tab[256];
static uint16_t crc16_tab[256];
static void rt_hash_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        crc32_tab[i] = c;
        uint16_t d = (uint16_t)i;
        for (int k = 0; k < 8; k++) d = d & 1 ? (uint16_t)((d >> 1) ^ 0xA001) : (uint16_t)(d >> 1);
        crc16_tab[i] = d;
    }
}
static pthread_once_t rt_hash_once = PTHREAD_ONCE_INIT;

static uint64_t rt_hash(int algo, const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen) {
    const uint8_t *seg[2] = {a, b};
    uint32_t len[2] = {alen, blen};
    if (algo == H_CRC32) {
        uint32_t c = 0xFFFFFFFFu;
        for (int s = 0; s < 2; s++)
            for (uint32_t i = 0; i < len[s]; i++) c = crc32_tab[(c ^ seg[s][i]) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }
    if (algo == H_CRC16) {
        uint16_t c = 0;
        for (int s = 0; s < 2; s++)
            for (uint32_t i = 0; i < len[s]; i++) c = (uint16_t)((c >> 8) ^ crc16_tab[(c ^ seg[s][i]) & 0xFF]);
        return c;
    }
    if (algo == H_CSUM16 || algo == H_XOR16) {
        uint64_t sum = 0;
        uint32_t word = 0, have = 0;
        for (int s = 0; s < 2; s++)
            for (uint32_t i = 0; i < len[s]; i++) {
                word = (word << 8) | seg[s][i];
                if (++have == 2) {
                    if (algo == H_CSUM16) sum += word; else sum ^= word;
                    word = 0;
                    have = 0;
                }
            }
        if (have) { word <<= 8; if (algo == H_CSUM16) sum += word; else sum ^= word; }
        if (algo == H_XOR16) return sum;
        while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
        return ~sum & 0xFFFF;
    }
    if (algo == H_IDENTITY) {
        uint64_t v = 0;
        uint32_t n = 0;
        for (int s = 0; s < 2 && n < 8; s++)
            for (uint32_t i = 0; i < len[s] && n < 8; i++, n++) v = (v << 8) | seg[s][i];
        return v;
    }
    return 0;
}

/* ---- deferred reclamation ----------------------------------------------------------- */
typedef struct rt_ret { struct rt_ret *next; uint64_t ep; void *p; } rt_ret_t;

/* ---- match tables ------------------------------------------------------------------- */
typedef struct rt_ad { int32_t aid; uint32_t nw; uint64_t w[]; } rt_ad_t;

#define RT_MAXLVL 24
typedef struct rt_ent {
    rt_ad_t *_Atomic ad;
    uint64_t pk, by;           /* direct counter */
    int64_t prio;              /* priority tables: higher first */
    uint64_t seq;              /* ... and earlier first among equal priorities */
    uint32_t plen;             /* lpm: prefix length */
    uint32_t nlv;              /* priority tables: skip list levels */
    uint64_t *key, *mask, *rng;
    struct rt_ent *_Atomic nx[]; /* priority tables: nx[0] is what packets walk */
} rt_ent_t;

typedef struct rt_htab {
    uint32_t cap, used, tombs;
    rt_ent_t *_Atomic s[];
} rt_htab_t;
#define TOMB ((rt_ent_t *)1)

typedef struct rt_lvl { uint32_t plen; uint32_t n; rt_htab_t *_Atomic h; uint64_t mask[]; } rt_lvl_t;
typedef struct rt_lpmimg { uint32_t n; rt_lvl_t *lv[]; } rt_lpmimg_t;

enum { T_EXACT, T_LPM, T_SCAN };
typedef struct rt_tbl {
    int kind;
    uint32_t kw;       /* key words (64-bit each; wider fields take several) */
    uint32_t nr;       /* range fields */
    uint32_t rw[16];   /* their word positions */
    uint64_t n;
    uint64_t rnd;      /* writer's skip-list level generator */
    rt_ad_t *_Atomic dflt;
    rt_htab_t *_Atomic h;
    rt_lpmimg_t *_Atomic lpm;
    rt_ent_t *head;    /* priority tables: sentinel of RT_MAXLVL levels */
} rt_tbl_t;

static inline uint64_t rt_hkey(const uint64_t *k, uint32_t kw) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ kw;
    for (uint32_t i = 0; i < kw; i++) {
        h ^= k[i];
        h *= 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    h *= 0x94D049BB133111EBull;
    return h ^ (h >> 29);
}

static inline int keq(const uint64_t *a, const uint64_t *b, uint32_t kw) {
    for (uint32_t i = 0; i < kw; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static inline rt_ent_t *ht_find(rt_htab_t *h, const uint64_t *k, uint32_t kw) {
    uint32_t m = h->cap - 1, i = (uint32_t)rt_hkey(k, kw) & m;
    for (;;) {
        rt_ent_t *e = ACQ(h->s[i]);
        if (!e) return NULL;
        if (e != TOMB && keq(e->key, k, kw)) return e;
        i = (i + 1) & m;
    }
}

/* the entry a packet's key selects, or NULL */
static inline rt_ent_t *rt_lookup(rt_tbl_t *t, const uint64_t *k) {
    uint32_t kw = t->kw;
    if (t->kind == T_EXACT) return ht_find(ACQ(t->h), k, kw);
    if (t->kind == T_LPM) {
        rt_lpmimg_t *img = ACQ(t->lpm);
        uint64_t mk[kw ? kw : 1];
        for (uint32_t l = 0; l < img->n; l++) {
            rt_lvl_t *lv = img->lv[l];
            for (uint32_t i = 0; i < kw; i++) mk[i] = k[i] & lv->mask[i];
            rt_ent_t *e = ht_find(ACQ(lv->h), mk, kw);
            if (e) return e;
        }
        return NULL;
    }
    for (rt_ent_t *e = ACQ(t->head->nx[0]); e; e = ACQ(e->nx[0])) {
        uint32_t i;
        for (i = 0; i < kw; i++)
            if ((k[i] & e->mask[i]) != e->key[i]) break;
        if (i < kw) continue;
        for (i = 0; i < t->nr; i++) {
            uint64_t v = k[t->rw[i]];
            if (v < e->rng[2 * i] || v > e->rng[2 * i + 1]) break;
        }
        if (i == t->nr) return e;
    }
    return NULL;
}

/* ---- the switch instance ------------------------------------------------------------ */
typedef struct rt_reps { uint32_t n; uint32_t trunc; struct { uint32_t port, rid; } r[]; } rt_reps_t;
typedef struct rt_grpd { uint32_t size, k, bytes; } rt_grpd_t;            /* register group */
typedef struct rt_regd { uint32_t group, col, width; } rt_regd_t;          /* one register */
typedef struct rt_tbld { int kind; uint32_t kw, nr; uint32_t rw[16]; } rt_tbld_t;

enum { EV_DIGEST = 1, EV_LOG = 2, EV_ASSERT = 3, EV_PACKET = 4 };
#define EV_MAX (64u << 20)   /* bytes of undelivered events before new ones are dropped */

typedef struct sw {
    pthread_mutex_t mu;      /* one batch of packets at a time */
    pthread_mutex_t wmu;     /* control-plane writers */
    pthread_mutex_t evmu;    /* the event queue */
    _Atomic uint64_t epoch;  /* reclamation: current epoch */
    _Atomic uint64_t rd;     /* the epoch the running batch started in, 0 when idle */
    rt_ret_t *ret;
    uint64_t nret;
    uint32_t ntbl, ngrp, nreg, nctr;
    rt_tbl_t **tbl;
    void **gm;               /* register group storage */
    uint64_t **cpk, **cby;   /* indexed counters */
    rt_reps_t *_Atomic mc[65536];
    rt_reps_t *_Atomic cs[32768];
    _Atomic uint64_t n_in, n_out, n_drop, n_perr, ev_dropped;
    uint8_t *ev;
    uint32_t evlen, evcap;
    uint64_t rng;
    uint8_t *dg;             /* digests of the current pass, committed after its ingress */
    uint32_t dglen, dgcap, dgn;
    void *tm;                /* traffic manager state (tm.c) */
} sw_t;

static inline uint64_t rt_rand(sw_t *sw) {   /* xorshift64*, for random() and hash random */
    uint64_t x = sw->rng;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    sw->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static void rt_ev_push(sw_t *sw, uint32_t kind, uint32_t id, const u128 *vals, uint32_t n) {
    uint32_t need = 16 + 16 * n;
    pthread_mutex_lock(&sw->evmu);
    if (sw->evlen + need > EV_MAX) {
        pthread_mutex_unlock(&sw->evmu);
        atomic_fetch_add(&sw->ev_dropped, 1);
        return;
    }
    if (sw->evlen + need > sw->evcap) {
        uint32_t cap = sw->evcap ? sw->evcap : 4096;
        while (cap < sw->evlen + need) cap *= 2;
        uint8_t *nb = realloc(sw->ev, cap);
        if (!nb) { pthread_mutex_unlock(&sw->evmu); atomic_fetch_add(&sw->ev_dropped, 1); return; }
        sw->ev = nb;
        sw->evcap = cap;
    }
    uint32_t hdr[4] = {kind, id, n, 0};
    memcpy(sw->ev + sw->evlen, hdr, 16);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t lo = (uint64_t)vals[i], hi = (uint64_t)(vals[i] >> 64);
        memcpy(sw->ev + sw->evlen + 16 + 16 * i, &lo, 8);
        memcpy(sw->ev + sw->evlen + 24 + 16 * i, &hi, 8);
    }
    sw->evlen += need;
    pthread_mutex_unlock(&sw->evmu);
}

/* a digest of the packet in ingress: kept until the pass's ingress is over (BMv2 sends the
 * digests of a packet after ingress; those of egress are never sent) */
static void rt_digest(sw_t *sw, uint32_t id, const u128 *vals, uint32_t n) {
    uint32_t need = 16 + 16 * n;
    if (sw->dglen + need > sw->dgcap) {
        uint32_t cap = sw->dgcap ? sw->dgcap : 1024;
        while (cap < sw->dglen + need) cap *= 2;
        uint8_t *nb = realloc(sw->dg, cap);
        if (!nb) { atomic_fetch_add(&sw->ev_dropped, 1); return; }
        sw->dg = nb;
        sw->dgcap = cap;
    }
    uint32_t hdr[4] = {EV_DIGEST, id, n, 0};
    memcpy(sw->dg + sw->dglen, hdr, 16);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t lo = (uint64_t)vals[i], hi = (uint64_t)(vals[i] >> 64);
        memcpy(sw->dg + sw->dglen + 16 + 16 * i, &lo, 8);
        memcpy(sw->dg + sw->dglen + 24 + 16 * i, &hi, 8);
    }
    sw->dglen += need;
    sw->dgn++;
}

static void rt_digest_commit(sw_t *sw) {
    if (!sw->dglen) return;
    pthread_mutex_lock(&sw->evmu);
    if (sw->evlen + sw->dglen > EV_MAX) {
        atomic_fetch_add(&sw->ev_dropped, sw->dgn);
    } else {
        if (sw->evlen + sw->dglen > sw->evcap) {
            uint32_t cap = sw->evcap ? sw->evcap : 4096;
            while (cap < sw->evlen + sw->dglen) cap *= 2;
            uint8_t *nb = realloc(sw->ev, cap);
            if (nb) { sw->ev = nb; sw->evcap = cap; }
        }
        if (sw->evlen + sw->dglen <= sw->evcap) {
            memcpy(sw->ev + sw->evlen, sw->dg, sw->dglen);
            sw->evlen += sw->dglen;
        } else {
            atomic_fetch_add(&sw->ev_dropped, sw->dgn);
        }
    }
    pthread_mutex_unlock(&sw->evmu);
    sw->dglen = 0;
    sw->dgn = 0;
}

/* ---- reclamation -------------------------------------------------------------------- */
static void rt_retire(sw_t *sw, void *p) {
    if (!p) return;
    rt_ret_t *r = malloc(sizeof *r);
    if (!r) return; /* leak rather than free under a reader */
    r->p = p;
    r->ep = atomic_fetch_add(&sw->epoch, 1);
    r->next = sw->ret;
    sw->ret = r;
    sw->nret++;
}

static void rt_reclaim(sw_t *sw, int force) {
    if (!force && sw->nret < 64) return;
    uint64_t rd = atomic_load(&sw->rd);
    rt_ret_t **pp = &sw->ret;
    while (*pp) {
        rt_ret_t *r = *pp;
        if (rd == 0 || rd > r->ep) {
            *pp = r->next;
            free(r->p);
            free(r);
            sw->nret--;
        } else {
            pp = &r->next;
        }
    }
}

/* a batch of packets: the epoch it may still see objects of */
static inline void rt_read_begin(sw_t *sw) { atomic_store(&sw->rd, atomic_load(&sw->epoch)); }
static inline void rt_read_end(sw_t *sw) { atomic_store(&sw->rd, 0); }

/* ---- table writes (callers hold sw->wmu) -------------------------------------------- */
static rt_htab_t *ht_new(uint32_t cap) {
    rt_htab_t *h = calloc(1, sizeof *h + (size_t)cap * sizeof(h->s[0]));
    if (h) h->cap = cap;
    return h;
}

static void ht_put(rt_htab_t *h, rt_ent_t *e, uint32_t kw) {
    uint32_t m = h->cap - 1, i = (uint32_t)rt_hkey(e->key, kw) & m;
    for (;;) {
        rt_ent_t *x = atomic_load_explicit(&h->s[i], memory_order_relaxed);
        if (!x || x == TOMB) {
            if (x == TOMB) h->tombs--;
            REL(h->s[i], e);
            h->used++;
            return;
        }
        i = (i + 1) & m;
    }
}

static int ht_insert(sw_t *sw, rt_htab_t *_Atomic *slot, rt_ent_t *e, uint32_t kw) {
    rt_htab_t *h = atomic_load(slot);
    if ((uint64_t)(h->used + h->tombs + 1) * 2 > h->cap) {
        uint32_t cap = 8;
        while (cap < 4u * (h->used + 1)) cap *= 2;
        rt_htab_t *nh = ht_new(cap);
        if (!nh) return -1;
        for (uint32_t i = 0; i < h->cap; i++) {
            rt_ent_t *x = atomic_load_explicit(&h->s[i], memory_order_relaxed);
            if (x && x != TOMB) ht_put(nh, x, kw);
        }
        ht_put(nh, e, kw);
        REL(*slot, nh);
        rt_retire(sw, h);
        return 0;
    }
    ht_put(h, e, kw);
    return 0;
}

static void ht_remove(rt_htab_t *h, rt_ent_t *e, uint32_t kw) {
    uint32_t m = h->cap - 1, i = (uint32_t)rt_hkey(e->key, kw) & m;
    for (uint32_t n = 0; n < h->cap; n++) {
        rt_ent_t *x = atomic_load_explicit(&h->s[i], memory_order_relaxed);
        if (!x) return;
        if (x == e) {
            REL(h->s[i], TOMB);
            h->used--;
            h->tombs++;
            return;
        }
        i = (i + 1) & m;
    }
}

static inline int sl_before(const rt_ent_t *a, const rt_ent_t *b) {
    return a->prio > b->prio || (a->prio == b->prio && a->seq < b->seq);
}

static void sl_path(rt_tbl_t *t, rt_ent_t *e, rt_ent_t **upd) {
    rt_ent_t *x = t->head;
    for (int l = RT_MAXLVL - 1; l >= 0; l--) {
        rt_ent_t *nx;
        while ((nx = atomic_load_explicit(&x->nx[l], memory_order_relaxed)) && sl_before(nx, e)) x = nx;
        upd[l] = x;
    }
}

static rt_ad_t *ad_new(int32_t aid, const uint64_t *args, uint32_t nw) {
    rt_ad_t *ad = malloc(sizeof *ad + (size_t)nw * 8 + 8);
    if (!ad) return NULL;
    ad->aid = aid;
    ad->nw = nw;
    if (nw) memcpy(ad->w, args, (size_t)nw * 8);
    return ad;
}

static rt_tbl_t *tbl_new(const rt_tbld_t *d) {
    rt_tbl_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->kind = d->kind;
    t->kw = d->kw;
    t->nr = d->nr;
    memcpy(t->rw, d->rw, sizeof t->rw);
    t->rnd = 0x853C49E6748FEA9Bull;
    t->dflt = ad_new(-1, NULL, 0);
    t->h = ht_new(8);
    t->lpm = calloc(1, sizeof(rt_lpmimg_t));
    t->head = calloc(1, sizeof(rt_ent_t) + RT_MAXLVL * sizeof(t->head->nx[0]));
    if (t->head) t->head->nlv = RT_MAXLVL;
    return t;
}

static void tbl_free(rt_tbl_t *t) {
    if (!t) return;
    /* entries are owned by whichever structure holds them */
    if (t->kind == T_EXACT && t->h) {
        for (uint32_t i = 0; i < t->h->cap; i++) {
            rt_ent_t *x = t->h->s[i];
            if (x && x != TOMB) { free(x->ad); free(x); }
        }
    }
    if (t->lpm) {
        for (uint32_t l = 0; l < t->lpm->n; l++) {
            rt_lvl_t *lv = t->lpm->lv[l];
            for (uint32_t i = 0; i < lv->h->cap; i++) {
                rt_ent_t *x = lv->h->s[i];
                if (x && x != TOMB) { free(x->ad); free(x); }
            }
            free(lv->h);
            free(lv);
        }
    }
    if (t->head) {
        rt_ent_t *e = t->head->nx[0];
        while (e) { rt_ent_t *n = e->nx[0]; free(e->ad); free(e); e = n; }
    }
    free(t->h);
    free(t->lpm);
    free(t->head);
    free(t->dflt);
    free(t);
}

static rt_ent_t *ent_new(rt_tbl_t *t, const uint64_t *key, const uint64_t *mask, const uint64_t *rng,
                         uint32_t nlv) {
    size_t words = (size_t)t->kw * 2 + (size_t)t->nr * 2;
    rt_ent_t *e = calloc(1, sizeof *e + nlv * sizeof(e->nx[0]) + words * 8 + 8);
    if (!e) return NULL;
    e->nlv = nlv;
    uint64_t *w = (uint64_t *)((char *)e + sizeof *e + nlv * sizeof(e->nx[0]));
    e->key = w;
    e->mask = w + t->kw;
    e->rng = w + 2 * t->kw;
    for (uint32_t i = 0; i < t->kw; i++) {
        e->mask[i] = mask ? mask[i] : ~0ull;
        e->key[i] = key[i] & e->mask[i];
    }
    for (uint32_t i = 0; i < 2 * t->nr; i++) e->rng[i] = rng[i];
    return e;
}

static rt_ent_t *tbl_insert(sw_t *sw, rt_tbl_t *t, const uint64_t *key, const uint64_t *mask,
                            const uint64_t *rng, uint32_t plen, int64_t prio, uint64_t seq,
                            int32_t aid, const uint64_t *args, uint32_t nw) {
    uint32_t nlv = 0;
    if (t->kind == T_SCAN) {
        nlv = 1;
        for (;;) {  /* geometric levels, p = 1/4 */
            uint64_t x = t->rnd;
            x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
            t->rnd = x;
            if (((x * 0x2545F4914F6CDD1Dull) >> 62) != 0 || nlv == RT_MAXLVL) break;
            nlv++;
        }
    }
    rt_ent_t *e = ent_new(t, key, t->kind == T_EXACT ? NULL : mask, rng, nlv);
    if (!e) return NULL;
    e->ad = ad_new(aid, args, nw);
    if (!e->ad) { free(e); return NULL; }
    e->prio = prio;
    e->seq = seq;
    e->plen = plen;
    if (t->kind == T_EXACT) {
        if (ht_insert(sw, &t->h, e, t->kw)) { free(e->ad); free(e); return NULL; }
    } else if (t->kind == T_LPM) {
        rt_lpmimg_t *img = atomic_load(&t->lpm);
        rt_lvl_t *lv = NULL;
        uint32_t at = 0;
        for (; at < img->n; at++) {
            if (img->lv[at]->plen == plen) { lv = img->lv[at]; break; }
            if (img->lv[at]->plen < plen) break;
        }
        if (!lv) {
            lv = calloc(1, sizeof *lv + (size_t)t->kw * 8 + 8);
            rt_lpmimg_t *ni = malloc(sizeof *ni + (img->n + 1) * sizeof(ni->lv[0]));
            rt_htab_t *h = ht_new(8);
            if (!lv || !ni || !h) { free(lv); free(ni); free(h); free(e->ad); free(e); return NULL; }
            lv->plen = plen;
            memcpy(lv->mask, mask, (size_t)t->kw * 8);
            lv->h = h;
            ni->n = img->n + 1;
            memcpy(ni->lv, img->lv, at * sizeof(ni->lv[0]));
            ni->lv[at] = lv;
            memcpy(ni->lv + at + 1, img->lv + at, (img->n - at) * sizeof(ni->lv[0]));
            if (ht_insert(sw, &lv->h, e, t->kw)) { free(lv); free(ni); free(h); free(e->ad); free(e); return NULL; }
            lv->n = 1;
            REL(t->lpm, ni);
            rt_retire(sw, img);
        } else {
            if (ht_insert(sw, &lv->h, e, t->kw)) { free(e->ad); free(e); return NULL; }
            lv->n++;
        }
    } else {
        rt_ent_t *upd[RT_MAXLVL];
        sl_path(t, e, upd);
        for (uint32_t l = 0; l < nlv; l++)
            atomic_store_explicit(&e->nx[l], atomic_load_explicit(&upd[l]->nx[l], memory_order_relaxed),
                                  memory_order_relaxed);
        for (uint32_t l = 0; l < nlv; l++) REL(upd[l]->nx[l], e);
    }
    t->n++;
    rt_reclaim(sw, 0);
    return e;
}

static void tbl_delete(sw_t *sw, rt_tbl_t *t, rt_ent_t *e) {
    if (t->kind == T_EXACT) {
        ht_remove(atomic_load(&t->h), e, t->kw);
    } else if (t->kind == T_LPM) {
        rt_lpmimg_t *img = atomic_load(&t->lpm);
        for (uint32_t at = 0; at < img->n; at++) {
            rt_lvl_t *lv = img->lv[at];
            if (lv->plen != e->plen) continue;
            ht_remove(atomic_load(&lv->h), e, t->kw);
            if (--lv->n == 0) {
                rt_lpmimg_t *ni = malloc(sizeof *ni + img->n * sizeof(ni->lv[0]));
                if (ni) {  /* out of memory: keep the empty level, lookups stay correct */
                    ni->n = img->n - 1;
                    memcpy(ni->lv, img->lv, at * sizeof(ni->lv[0]));
                    memcpy(ni->lv + at, img->lv + at + 1, (img->n - at - 1) * sizeof(ni->lv[0]));
                    REL(t->lpm, ni);
                    rt_retire(sw, img);
                    rt_retire(sw, atomic_load(&lv->h));
                    rt_retire(sw, lv);
                }
            }
            break;
        }
    } else {
        rt_ent_t *upd[RT_MAXLVL];
        sl_path(t, e, upd);
        for (uint32_t l = 0; l < e->nlv; l++)
            if (atomic_load_explicit(&upd[l]->nx[l], memory_order_relaxed) == e)
                REL(upd[l]->nx[l], atomic_load_explicit(&e->nx[l], memory_order_relaxed));
    }
    t->n--;
    rt_retire(sw, atomic_load(&e->ad));
    rt_retire(sw, e);
    rt_reclaim(sw, 0);
}

static int tbl_modify(sw_t *sw, rt_ad_t *_Atomic *slot, int32_t aid, const uint64_t *args, uint32_t nw) {
    rt_ad_t *ad = ad_new(aid, args, nw);
    if (!ad) return -1;
    rt_ad_t *old = atomic_exchange(slot, ad);
    rt_retire(sw, old);
    rt_reclaim(sw, 0);
    return 0;
}

/* fields that straddle more than 16 bytes of a header: bit by bit */
static u128 getbits(const uint8_t *q, uint32_t bit, unsigned w) {
    u128 v = 0;
    for (unsigned i = 0; i < w; i++, bit++) v = (v << 1) | ((q[bit >> 3] >> (7 - (bit & 7))) & 1);
    return v;
}
static void putbits(uint8_t *q, uint32_t bit, unsigned w, u128 v) {
    for (unsigned i = 0; i < w; i++, bit++)
        if ((v >> (w - 1 - i)) & 1) q[bit >> 3] |= (uint8_t)(0x80 >> (bit & 7));
}
