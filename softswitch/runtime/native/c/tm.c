/* softswitch native backend: BMv2's traffic manager around the generated pipeline, and
 * the functions Python calls (cffi ABI mode: every call releases the GIL).
 *
 * Comes after the generated code, which defines pkt_t, the G_* functions and the STD_*
 * accessors. The order of events follows runtime/pipeline.py (the reference): after
 * ingress the I2E clone, digests, resubmit, multicast, drop, unicast; after egress the
 * E2E clone, the drop check, checksums and deparsing, truncation, recirculation.
 * Everything an input frame causes is finished before the next frame starts. */

#define MAX_PASSES 64      /* resubmits + recirculations per input frame */
#define MAX_EGRESS 4096    /* copies through egress per pass */
#define MAX_WORK (MAX_PASSES - 1)
#define DROP_PORT 511
enum { IT_NORMAL, IT_INGRESS_CLONE, IT_EGRESS_CLONE, IT_COALESCED, IT_RECIRC, IT_REPLICATION,
       IT_RESUBMIT };

typedef struct { pkt_t *p; const uint8_t *pl; uint32_t len; } tm_job;
typedef struct {
    uint32_t port, itype, len, cap;
    int64_t fl;
    uint8_t *data;
    pkt_t *saved;
} tm_work;

typedef struct {
    pkt_t *ing;
    tm_job *jobs;
    uint32_t nj, jh, jcap;
    pkt_t **pool;
    uint32_t np, pcap;
    tm_work work[MAX_WORK];
    uint32_t nwork, whead;
    uint32_t *orec;             /* 4 words per output: input index, port, offset, length */
    uint32_t on, ocap;
    uint8_t *od;
    uint64_t odlen, odcap;
    uint32_t idx;
    int oom;
} tm_t;

static pkt_t *pkt_alloc(void) {
    void *p = NULL;
    if (posix_memalign(&p, 64, sizeof(pkt_t))) return NULL;
    return p;
}

static pkt_t *job_pkt(tm_t *T) {
    if (T->np == T->pcap) {
        uint32_t cap = T->pcap ? T->pcap * 2 : 16;
        pkt_t **np = realloc(T->pool, cap * sizeof *np);
        if (!np) return NULL;
        for (uint32_t i = T->pcap; i < cap; i++) np[i] = NULL;
        T->pool = np;
        T->pcap = cap;
    }
    if (!T->pool[T->np] && !(T->pool[T->np] = pkt_alloc())) return NULL;
    return T->pool[T->np++];
}

static void job_push(tm_t *T, pkt_t *p, const uint8_t *pl, uint32_t len) {
    if (T->nj == T->jcap) {
        uint32_t cap = T->jcap ? T->jcap * 2 : 16;
        tm_job *nj = realloc(T->jobs, cap * sizeof *nj);
        if (!nj) { T->oom = 1; return; }
        T->jobs = nj;
        T->jcap = cap;
    }
    T->jobs[T->nj++] = (tm_job){p, pl, len};
}

/* room for a job: the queue never holds more than MAX_EGRESS (the rest would never run) */
static inline int job_room(tm_t *T) { return T->nj < MAX_EGRESS; }

static uint8_t *od_reserve(tm_t *T, uint64_t n) {
    if (T->odlen + n > T->odcap) {
        uint64_t cap = T->odcap ? T->odcap : 65536;
        while (cap < T->odlen + n) cap *= 2;
        uint8_t *nb = realloc(T->od, cap);
        if (!nb) { T->oom = 1; return NULL; }
        T->od = nb;
        T->odcap = cap;
    }
    return T->od + T->odlen;
}

static void out_commit(tm_t *T, uint32_t port, uint32_t len) {
    if (T->on == T->ocap) {
        uint32_t cap = T->ocap ? T->ocap * 2 : 256;
        uint32_t *nr = realloc(T->orec, (size_t)cap * 16);
        if (!nr) { T->oom = 1; return; }
        T->orec = nr;
        T->ocap = cap;
    }
    uint32_t *r = T->orec + 4 * (size_t)T->on++;
    r[0] = T->idx;
    r[1] = port;
    r[2] = (uint32_t)T->odlen;
    r[3] = len;
    T->odlen += len;
}

static void work_add(tm_t *T, uint32_t port, const uint8_t *data, uint32_t len, uint32_t itype,
                     const pkt_t *S, int64_t fl) {
    if (T->nwork >= MAX_WORK) return;  /* beyond the pass limit: never processed */
    tm_work *w = &T->work[T->nwork];
    if (w->cap < len || !w->data) {
        uint32_t cap = len < 2048 ? 2048 : len;
        uint8_t *nb = realloc(w->data, cap);
        if (!nb) { T->oom = 1; return; }
        w->data = nb;
        w->cap = cap;
    }
    if (fl >= 0) {
        if (!w->saved && !(w->saved = pkt_alloc())) { T->oom = 1; return; }
        memcpy(w->saved, S, sizeof(pkt_t));
    }
    memcpy(w->data, data, len);
    w->port = port;
    w->len = len;
    w->itype = itype;
    w->fl = fl;
    T->nwork++;
}

static void clone_copies(sw_t *sw, tm_t *T, const pkt_t *S, uint32_t itype, const uint8_t *frame,
                         uint32_t flen, const uint8_t *pl, uint32_t pllen) {
    uint64_t sid = S->i_clone_sess;
    rt_reps_t *sess = sid < 32768 ? ACQ(sw->cs[sid]) : NULL;
    if (!sess) return;
    for (uint32_t i = 0; i < sess->n; i++) {
        if (!job_room(T)) return;
        pkt_t *c = job_pkt(T);
        if (!c) { T->oom = 1; return; }
        memset(c, 0, sizeof *c);
        const uint8_t *data = pl;
        uint32_t dlen = pllen;
        if (frame) {  /* an ingress clone is the received frame, parsed again */
            STD_INGRESS_PORT(c) = STD_INGRESS_PORT(S);
            uint32_t off = 0;
            G_parse(sw, c, frame, flen, &off);
            data = frame + off;
            dlen = flen - off;
        } else {
            G_copy_headers(c, S);
        }
        if (S->i_clone_fl >= 0) G_preserve(c, S, S->i_clone_fl);
        STD_INSTANCE_TYPE(c) = itype;
        STD_EGRESS_PORT(c) = sess->r[i].port;
        STD_INGRESS_PORT(c) = STD_INGRESS_PORT(S);
        STD_PACKET_LENGTH(c) = STD_PACKET_LENGTH(S);
#ifdef HAS_EGRESS_RID
        STD_EGRESS_RID(c) = sess->r[i].rid;
#endif
        if (sess->trunc) c->i_trunc = sess->trunc;
        job_push(T, c, data, dlen);
    }
}

static void egress_one(sw_t *sw, tm_t *T, pkt_t *S, const uint8_t *pl, uint32_t pllen) {
    S->i_clone = 0;
    S->i_recirc = 0;
    S->i_pl = pl;
    S->i_pllen = pllen;
    STD_EGRESS_SPEC(S) = 0;
    S->i_exit = 0;
    G_egress(sw, S);
    if (S->i_clone && S->i_clone_type == 1)
        clone_copies(sw, T, S, IT_EGRESS_CLONE, NULL, 0, pl, pllen);
    if (STD_EGRESS_SPEC(S) == DROP_PORT) {
        atomic_fetch_add_explicit(&sw->n_drop, 1, memory_order_relaxed);
        return;
    }
    S->i_exit = 0;
    G_compute(sw, S);
    uint8_t *o = od_reserve(T, (uint64_t)G_MAXHDR + pllen);
    if (!o) return;
    uint32_t n = G_deparse(sw, S, o);
    memcpy(o + n, pl, pllen);
    n += pllen;
    if (S->i_trunc && S->i_trunc < n) n = (uint32_t)S->i_trunc;
    if (S->i_recirc)
        work_add(T, (uint32_t)STD_INGRESS_PORT(S), o, n, IT_RECIRC, S, S->i_recirc_fl);
    else
        out_commit(T, (uint32_t)STD_EGRESS_PORT(S), n);
}

static void run_egress(sw_t *sw, tm_t *T) {
    uint32_t done = 0;
    while (T->jh < T->nj && done < MAX_EGRESS) {
        done++;
        tm_job j = T->jobs[T->jh++];
        egress_one(sw, T, j.p, j.pl, j.len);
    }
}

static void after_ingress(sw_t *sw, tm_t *T, pkt_t *S, uint32_t port, const uint8_t *f, uint32_t flen,
                          const uint8_t *pl, uint32_t pllen) {
    T->nj = T->jh = T->np = 0;
    if (S->i_clone && S->i_clone_type == 0)
        clone_copies(sw, T, S, IT_INGRESS_CLONE, f, flen, pl, pllen);
    rt_digest_commit(sw);
    if (S->i_resub) {
        work_add(T, port, f, flen, IT_RESUBMIT, S, S->i_resub_fl);
        run_egress(sw, T);
        return;
    }
#ifdef HAS_MCAST_GRP
    uint64_t grp = STD_MCAST_GRP(S);
#else
    uint64_t grp = 0;
#endif
    if (grp) {
        rt_reps_t *reps = grp < 65536 ? ACQ(sw->mc[grp]) : NULL;
        uint32_t n = reps ? reps->n : 0;
        for (uint32_t i = 0; i < n && job_room(T); i++) {
            pkt_t *c = job_pkt(T);
            if (!c) { T->oom = 1; break; }
            memcpy(c, S, sizeof *c);
            STD_EGRESS_PORT(c) = reps->r[i].port;
#ifdef HAS_EGRESS_RID
            STD_EGRESS_RID(c) = reps->r[i].rid;
#endif
            STD_INSTANCE_TYPE(c) = IT_REPLICATION;
            job_push(T, c, pl, pllen);
        }
        if (!n) atomic_fetch_add_explicit(&sw->n_drop, 1, memory_order_relaxed);
    } else if (STD_EGRESS_SPEC(S) == DROP_PORT) {
        atomic_fetch_add_explicit(&sw->n_drop, 1, memory_order_relaxed);
    } else {
        STD_EGRESS_PORT(S) = STD_EGRESS_SPEC(S);
        job_push(T, S, pl, pllen);
    }
    run_egress(sw, T);
}

static void one_pass(sw_t *sw, tm_t *T, uint32_t port, const uint8_t *f, uint32_t flen, uint32_t itype,
                     const pkt_t *saved, int64_t fl) {
    pkt_t *S = T->ing;
    memset(S, 0, sizeof *S);
    STD_INGRESS_PORT(S) = port;
    STD_PACKET_LENGTH(S) = flen;
    STD_INSTANCE_TYPE(S) = itype;
    if (saved && fl >= 0) G_preserve(S, saved, fl);
    sw->dglen = 0;
    sw->dgn = 0;
    uint32_t off = 0;
    if (G_parse(sw, S, f, flen, &off)) atomic_fetch_add_explicit(&sw->n_perr, 1, memory_order_relaxed);
    S->i_pl = f + off;
    S->i_pllen = flen - off;
    S->i_exit = 0;
    G_verify(sw, S);
    S->i_exit = 0;
    G_ingress(sw, S);
    after_ingress(sw, T, S, port, f, flen, f + off, flen - off);
}

static void tm_frame(sw_t *sw, tm_t *T, uint32_t port, const uint8_t *f, uint32_t flen) {
    atomic_fetch_add_explicit(&sw->n_in, 1, memory_order_relaxed);
    uint32_t out0 = T->on;
    uint64_t od0 = T->odlen;
    T->nwork = T->whead = 0;
    T->oom = 0;
    one_pass(sw, T, port, f, flen, IT_NORMAL, NULL, -1);
    int passes = 1;
    while (T->whead < T->nwork && passes < MAX_PASSES) {
        passes++;
        tm_work *w = &T->work[T->whead++];
        one_pass(sw, T, w->port, w->data, w->len, w->itype, w->saved, w->fl);
    }
    if (T->oom) {  /* out of memory: the frame is lost, as an internal error in Python */
        T->on = out0;
        T->odlen = od0;
        atomic_fetch_add_explicit(&sw->n_drop, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&sw->n_out, T->on - out0, memory_order_relaxed);
}

static void tm_free(tm_t *T) {
    if (!T) return;
    free(T->ing);
    free(T->jobs);
    for (uint32_t i = 0; i < T->pcap; i++) free(T->pool[i]);
    free(T->pool);
    for (int i = 0; i < MAX_WORK; i++) { free(T->work[i].data); free(T->work[i].saved); }
    free(T->orec);
    free(T->od);
    free(T);
}

/* ---- the API Python calls ----------------------------------------------------------- */
#define API __attribute__((visibility("default")))

API void sw_free(sw_t *sw);

API sw_t *sw_new(uint64_t seed) {
    pthread_once(&rt_hash_once, rt_hash_init);
    sw_t *sw = calloc(1, sizeof *sw);
    if (!sw) return NULL;
    pthread_mutex_init(&sw->mu, NULL);
    pthread_mutex_init(&sw->wmu, NULL);
    pthread_mutex_init(&sw->evmu, NULL);
    atomic_store(&sw->epoch, 1);
    sw->rng = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    if (!sw->rng) sw->rng = 1;
    sw->ntbl = G_NTBL;
    sw->ngrp = G_NGRP;
    sw->nreg = G_NREG;
    sw->nctr = G_NCTR;
    sw->tbl = calloc(G_NTBL + 1, sizeof *sw->tbl);
    sw->gm = calloc(G_NGRP + 1, sizeof *sw->gm);
    sw->cpk = calloc(G_NCTR + 1, sizeof *sw->cpk);
    sw->cby = calloc(G_NCTR + 1, sizeof *sw->cby);
    tm_t *T = calloc(1, sizeof *T);
    sw->tm = T;
    if (!sw->tbl || !sw->gm || !sw->cpk || !sw->cby || !T || !(T->ing = pkt_alloc())) goto fail;
    for (uint32_t i = 0; i < G_NTBL; i++)
        if (!(sw->tbl[i] = tbl_new(&G_TBLS[i]))) goto fail;
    for (uint32_t i = 0; i < G_NGRP; i++) {
        size_t n = (size_t)G_GRPS[i].size * G_GRPS[i].k;
        if (!(sw->gm[i] = calloc(n ? n : 1, G_GRPS[i].bytes))) goto fail;
    }
    for (uint32_t i = 0; i < G_NCTR; i++) {
        uint32_t n = G_CSIZE[i] ? G_CSIZE[i] : 1;
        if (!(sw->cpk[i] = calloc(n, 8)) || !(sw->cby[i] = calloc(n, 8))) goto fail;
    }
    return sw;
fail:
    sw_free(sw);
    return NULL;
}

API void sw_free(sw_t *sw) {
    if (!sw) return;
    if (sw->tbl) for (uint32_t i = 0; i < sw->ntbl; i++) tbl_free(sw->tbl[i]);
    if (sw->gm) for (uint32_t i = 0; i < sw->ngrp; i++) free(sw->gm[i]);
    if (sw->cpk) for (uint32_t i = 0; i < sw->nctr; i++) free(sw->cpk[i]);
    if (sw->cby) for (uint32_t i = 0; i < sw->nctr; i++) free(sw->cby[i]);
    free(sw->tbl);
    free(sw->gm);
    free(sw->cpk);
    free(sw->cby);
    for (uint32_t i = 0; i < 65536; i++) free(sw->mc[i]);
    for (uint32_t i = 0; i < 32768; i++) free(sw->cs[i]);
    atomic_store(&sw->rd, 0);
    rt_reclaim(sw, 1);
    tm_free(sw->tm);
    free(sw->ev);
    free(sw->dg);
    pthread_mutex_destroy(&sw->mu);
    pthread_mutex_destroy(&sw->wmu);
    pthread_mutex_destroy(&sw->evmu);
    free(sw);
}

API uint32_t sw_pkt_size(void) { return (uint32_t)sizeof(pkt_t); }

/* Run n frames (frame i: ports[i], buf[offs[i] .. offs[i] + lens[i])). With keep, every
 * output stays readable (sw_out_*) until the next call; without, outputs are only
 * counted. Returns the number of outputs. */
static uint64_t run_locked(sw_t *sw, const uint8_t *buf, const uint64_t *offs, const uint32_t *lens,
                           const uint16_t *ports, uint32_t n, int keep) {
    tm_t *T = sw->tm;
    uint64_t total = 0;
    T->on = 0;
    T->odlen = 0;
    rt_read_begin(sw);
    for (uint32_t i = 0; i < n; i++) {
        T->idx = i;
        tm_frame(sw, T, ports[i], buf + offs[i], lens[i]);
        if (!keep) {
            total += T->on;
            T->on = 0;
            T->odlen = 0;
        }
    }
    rt_read_end(sw);
    return keep ? T->on : total;
}

/* The outputs of a run stay valid until the next run: whoever reads them holds the lock
 * from the run until it has read them (sw_lock, sw_run_unlocked, read, sw_unlock). */
API void sw_lock(sw_t *sw) { pthread_mutex_lock(&sw->mu); }
API void sw_unlock(sw_t *sw) { pthread_mutex_unlock(&sw->mu); }

API uint64_t sw_run_unlocked(sw_t *sw, const uint8_t *buf, const uint64_t *offs, const uint32_t *lens,
                             const uint16_t *ports, uint32_t n, int keep) {
    return run_locked(sw, buf, offs, lens, ports, n, keep);
}

API uint64_t sw_run(sw_t *sw, const uint8_t *buf, const uint64_t *offs, const uint32_t *lens,
                    const uint16_t *ports, uint32_t n, int keep) {
    pthread_mutex_lock(&sw->mu);
    uint64_t r = run_locked(sw, buf, offs, lens, ports, n, keep);
    pthread_mutex_unlock(&sw->mu);
    return r;
}

/* The same batch `times` times over (benchmarks: no Python between batches). */
API uint64_t sw_run_repeat(sw_t *sw, const uint8_t *buf, const uint64_t *offs, const uint32_t *lens,
                           const uint16_t *ports, uint32_t n, uint32_t times) {
    uint64_t total = 0;
    for (uint32_t t = 0; t < times; t++) {
        pthread_mutex_lock(&sw->mu);
        total += run_locked(sw, buf, offs, lens, ports, n, 0);
        pthread_mutex_unlock(&sw->mu);
    }
    return total;
}

API const uint32_t *sw_out_recs(sw_t *sw) { return ((tm_t *)sw->tm)->orec; }
API const uint8_t *sw_out_data(sw_t *sw) { return ((tm_t *)sw->tm)->od; }

API void sw_stats(sw_t *sw, uint64_t *out) {
    out[0] = atomic_load(&sw->n_in);
    out[1] = atomic_load(&sw->n_out);
    out[2] = atomic_load(&sw->n_drop);
    out[3] = atomic_load(&sw->n_perr);
    out[4] = atomic_load(&sw->ev_dropped);
}

/* ---- tables ------------------------------------------------------------------------- */
API void *sw_tbl_insert(sw_t *sw, uint32_t tid, const uint64_t *key, const uint64_t *mask,
                        const uint64_t *rng, uint32_t plen, int64_t prio, uint64_t seq, int32_t aid,
                        const uint64_t *args, uint32_t nw) {
    if (tid >= sw->ntbl) return NULL;
    pthread_mutex_lock(&sw->wmu);
    rt_ent_t *e = tbl_insert(sw, sw->tbl[tid], key, mask, rng, plen, prio, seq, aid, args, nw);
    pthread_mutex_unlock(&sw->wmu);
    return e;
}

API void sw_tbl_delete(sw_t *sw, uint32_t tid, void *e) {
    if (tid >= sw->ntbl || !e) return;
    pthread_mutex_lock(&sw->wmu);
    tbl_delete(sw, sw->tbl[tid], e);
    pthread_mutex_unlock(&sw->wmu);
}

API int sw_tbl_modify(sw_t *sw, uint32_t tid, void *e, int32_t aid, const uint64_t *args, uint32_t nw) {
    if (tid >= sw->ntbl || !e) return -1;
    pthread_mutex_lock(&sw->wmu);
    int r = tbl_modify(sw, &((rt_ent_t *)e)->ad, aid, args, nw);
    pthread_mutex_unlock(&sw->wmu);
    return r;
}

API int sw_tbl_set_default(sw_t *sw, uint32_t tid, int32_t aid, const uint64_t *args, uint32_t nw) {
    if (tid >= sw->ntbl) return -1;
    pthread_mutex_lock(&sw->wmu);
    int r = tbl_modify(sw, &sw->tbl[tid]->dflt, aid, args, nw);
    pthread_mutex_unlock(&sw->wmu);
    return r;
}

API void sw_ent_counter(void *e, uint64_t *out) {
    rt_ent_t *x = e;
    out[0] = __atomic_load_n(&x->pk, __ATOMIC_RELAXED);
    out[1] = __atomic_load_n(&x->by, __ATOMIC_RELAXED);
}

API void sw_ent_set_counter(sw_t *sw, void *e, uint64_t pk, uint64_t by) {
    rt_ent_t *x = e;
    pthread_mutex_lock(&sw->mu);
    x->pk = pk;
    x->by = by;
    pthread_mutex_unlock(&sw->mu);
}

/* ---- registers and counters ----------------------------------------------------------- */
static void *reg_cell(sw_t *sw, uint32_t rid, uint32_t idx) {
    if (rid >= G_NREG) return NULL;
    const rt_regd_t *r = &G_REGS[rid];
    const rt_grpd_t *g = &G_GRPS[r->group];
    if (idx >= g->size) return NULL;
    return (char *)sw->gm[r->group] + ((size_t)idx * g->k + r->col) * g->bytes;
}

API int sw_reg_read(sw_t *sw, uint32_t rid, uint32_t idx, uint64_t *out) {
    void *c = reg_cell(sw, rid, idx);
    if (!c) return -1;
    u128 v = 0;
    pthread_mutex_lock(&sw->mu);
    switch (G_GRPS[G_REGS[rid].group].bytes) {
    case 1: v = *(uint8_t *)c; break;
    case 2: v = *(uint16_t *)c; break;
    case 4: v = *(uint32_t *)c; break;
    case 8: v = *(uint64_t *)c; break;
    default: memcpy(&v, c, 16);
    }
    pthread_mutex_unlock(&sw->mu);
    out[0] = (uint64_t)v;
    out[1] = (uint64_t)(v >> 64);
    return 0;
}

API int sw_reg_write(sw_t *sw, uint32_t rid, uint32_t idx, uint64_t lo, uint64_t hi) {
    void *c = reg_cell(sw, rid, idx);
    if (!c) return -1;
    u128 v = U128(hi, lo);
    pthread_mutex_lock(&sw->mu);
    switch (G_GRPS[G_REGS[rid].group].bytes) {
    case 1: *(uint8_t *)c = (uint8_t)v; break;
    case 2: *(uint16_t *)c = (uint16_t)v; break;
    case 4: *(uint32_t *)c = (uint32_t)v; break;
    case 8: *(uint64_t *)c = (uint64_t)v; break;
    default: memcpy(c, &v, 16);
    }
    pthread_mutex_unlock(&sw->mu);
    return 0;
}

API int sw_ctr_read(sw_t *sw, uint32_t cid, uint32_t idx, uint64_t *out) {
    if (cid >= G_NCTR || idx >= G_CSIZE[cid]) return -1;
    out[0] = __atomic_load_n(&sw->cpk[cid][idx], __ATOMIC_RELAXED);
    out[1] = __atomic_load_n(&sw->cby[cid][idx], __ATOMIC_RELAXED);
    return 0;
}

API int sw_ctr_write(sw_t *sw, uint32_t cid, uint32_t idx, uint64_t pk, uint64_t by) {
    if (cid >= G_NCTR || idx >= G_CSIZE[cid]) return -1;
    pthread_mutex_lock(&sw->mu);
    sw->cpk[cid][idx] = pk;
    sw->cby[cid][idx] = by;
    pthread_mutex_unlock(&sw->mu);
    return 0;
}

/* ---- replication ---------------------------------------------------------------------- */
static int reps_set(sw_t *sw, rt_reps_t *_Atomic *slot, const uint32_t *ports, const uint32_t *rids,
                    uint32_t n, uint32_t trunc) {
    rt_reps_t *r = NULL;
    if (ports) {
        r = malloc(sizeof *r + (size_t)n * sizeof(r->r[0]));
        if (!r) return -1;
        r->n = n;
        r->trunc = trunc;
        for (uint32_t i = 0; i < n; i++) { r->r[i].port = ports[i]; r->r[i].rid = rids[i]; }
    }
    pthread_mutex_lock(&sw->wmu);
    rt_reps_t *old = atomic_exchange(slot, r);
    rt_retire(sw, old);
    rt_reclaim(sw, 0);
    pthread_mutex_unlock(&sw->wmu);
    return 0;
}

API int sw_mc_set(sw_t *sw, uint32_t grp, const uint32_t *ports, const uint32_t *rids, uint32_t n) {
    if (grp >= 65536) return -1;
    return reps_set(sw, &sw->mc[grp], ports, rids, n, 0);
}

API int sw_cs_set(sw_t *sw, uint32_t sess, const uint32_t *ports, const uint32_t *rids, uint32_t n,
                  uint32_t trunc) {
    if (sess >= 32768) return -1;
    return reps_set(sw, &sw->cs[sess], ports, rids, n, trunc);
}

/* ---- events (digests, log messages, frames for the CPU port) ------------------------ */
API uint32_t sw_ev_take(sw_t *sw, uint8_t *buf, uint32_t cap) {
    pthread_mutex_lock(&sw->evmu);
    uint32_t n = 0;
    while (n + 16 <= sw->evlen) {
        uint32_t hdr[4];
        memcpy(hdr, sw->ev + n, 16);
        uint32_t rec = hdr[0] == EV_PACKET ? 16 + ((hdr[2] + 7u) & ~7u) : 16 + 16 * hdr[2];
        if (n + rec > cap) break;
        n += rec;
    }
    memcpy(buf, sw->ev, n);
    memmove(sw->ev, sw->ev + n, sw->evlen - n);
    sw->evlen -= n;
    pthread_mutex_unlock(&sw->evmu);
    return n;
}

API uint32_t sw_ev_len(sw_t *sw) {
    pthread_mutex_lock(&sw->evmu);
    uint32_t n = sw->evlen;
    pthread_mutex_unlock(&sw->evmu);
    return n;
}
