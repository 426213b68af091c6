/* SPDX-License-Identifier: Apache-2.0 */
#include "core/pipeline.h"
#include "core/capture/capture.h"
#include "core/capture/pcap-file.h"

#include <errno.h>
#include <poll.h>
#include <glib-unix.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* A batch is handed over once it holds this many bytes (or, live, once it is
 * older than BATCH_MAX_AGE). */
#define BATCH_BYTES (64 * 1024)
#define BATCH_MAX_AGE (100 * 1000)
/* Live handles wake the worker at least this often. */
#define LIVE_TIMEOUT_MS 100
/* Reading files, the main thread is woken once this many batches wait (or
 * a worker ends) rather than for each batch: a wake-up per batch costs two
 * context switches, a measurable share when every batch is a few hundred
 * events (32 rather than 8: 3,400 -> 900 wake-ups of the main thread in a
 * benchmark run, each preempting a shard on a 2-processor machine). Live,
 * every batch wakes it at once. */
#define OFFLINE_WAKE_BATCHES 32

/* Packets travel from a source's reader to a shard in chunks: a run of
 * (clock, OtsPacket, payload) records, the clock being the latest packet
 * time the reader has seen. A chunk is handed over once full (or, live,
 * after every read burst), so the queues are touched once per ~1000 packets. */
#define CHUNK_BYTES (256 * 1024 - 64)
/* The chunks of a source (16 MiB), shared by its shards: the bound of what
 * its reader can be ahead. One pool rather than a few chunks per shard,
 * because the load moves between shards: a capture's heavy flows come in
 * runs, and while one shard works through a run the reader goes on filling
 * chunks for the others instead of waiting on the busy one's few. Measured
 * on the benchmark capture (tests/bench/interleave, docs/performance.md). */
#define CHUNKS_PER_SOURCE 64
/* A reader that found the pool empty sleeps until this many chunks are
 * back, not just one: woken per chunk, it slept and woke ~3,000 times in a
 * run of the benchmark, each time preempting a shard. */
#define CHUNKS_REFILL 8
#define MAX_SHARDS 16

typedef struct {
    gsize used;
    gint64 now; /* the reader's packet time when sent: drives flow expiry */
    guint8 data[CHUNK_BYTES];
} Chunk;

/* Pushed to a shard's queue after the last chunk: the source has ended. */
static Chunk chunk_end;

typedef struct _Worker Worker;

/* A shard owns a share of a source's flows (chosen by a symmetric hash of
 * the 5-tuple, so both directions of a flow land on the same shard): their
 * flow table, reassembly and dissector state, and its own event writer. All
 * callbacks of one flow run on one thread, as the dissector API promises. */
typedef struct {
    Worker *src;
    guint index;
    GThread *thread; /* NULL: runs inline on the reader's thread */
    GAsyncQueue *full; /* Chunk*, reader -> shard */
    Chunk *filling;    /* reader-owned */

    /* A reload's registry, waiting to be taken (atomic). */
    OtsDissectRegistry *next_registry;

    /* Shard-owned state. */
    /* The config's, kept here: read for every packet, and the source's
     * line with the pipeline pointer is also where the reader counts. */
    gsize max_ooo_bytes;
    OtsDissectRegistry *registry;
    OtsFlowTable *flows;
    OtsEventWriter writer;
    OtsDissectContext dctx;
    gint64 last_expire;
    gint64 last_packet_ts;
    guint64 queue_dropped_events;

    /* Published for the main thread. */
    GMutex snap_lock;
    OtsSourceStats snap;
    GHashTable *snap_anomalies;
} Shard;

/* A capture source: an interface, or the list of files read in order. Its
 * thread reads and decodes; its shards do the rest. */
struct _Worker {
    OtsPipeline *p;
    char *name;
    gboolean live;
    pcap_t *handle;    /* live */
    GStrv files;       /* offline */
    GThread *thread;
    gint stop;         /* atomic */

    /* Reader-owned state. */
    int dlt;
    OtsDecodeStats decode;
    Shard *shards[MAX_SHARDS];
    guint n_shards;
    /* The free chunks, shards -> reader (more than one shard). */
    GMutex pool_lock;
    GCond pool_cond;
    GPtrArray *pool;
    guint pool_wanted; /* the reader sleeps until the pool holds this many */
    gint64 last_tick; /* packet time every shard was last told */
    gint64 clock;     /* latest packet time read */

    /* Published for the main thread. */
    GMutex snap_lock;
    OtsSourceStats snap; /* name, live, finished, pcap and decode counters */
};

struct _OtsPipeline {
    OtsPipelineConfig config;
    OtsDissectRegistry *registry;
    OtsPipelineBatchFunc on_batch;
    OtsPipelineDoneFunc on_done;
    gpointer user;
    GPtrArray *workers;

    /* Bounded queue to the main thread. NULL items mean "a worker finished". */
    GMutex lock;
    GCond not_full;
    GQueue queue;
    /* Batches the main thread is done with, for the shards to fill again
     * (under @lock): fresh 68 KiB buffers from another thread's arena cost
     * page faults and zeroing, measured at ~20 % of the run time. */
    GPtrArray *spare;
    guint queued_batches;
    gboolean wake_pending; /* the eventfd was written, the queue not yet found empty */
    int wake_fd;
    guint wake_source;
    guint running;
    gboolean started;
};

/* The count for @key in @t ("proto.code" -> guint64), made 0 if new. */
static guint64 *
counter_slot(GHashTable *t, const char *key)
{
    guint64 *n = g_hash_table_lookup(t, key);
    if (!n) {
        n = g_new0(guint64, 1);
        g_hash_table_insert(t, g_strdup(key), n);
    }
    return n;
}

static void
shard_snapshot(Shard *sh, gboolean finished)
{
    g_mutex_lock(&sh->snap_lock);
    sh->snap.finished = finished;
    if (sh->flows)
        ots_flow_table_get_stats(sh->flows, &sh->snap.flows);
    sh->snap.tcp = sh->dctx.tcp;
    sh->snap.dissect = sh->dctx.stats;
    memcpy(sh->snap.events, sh->writer.counts, sizeof(sh->snap.events));
    sh->snap.anomalies = sh->writer.anomalies;
    sh->snap.queue_dropped_events = sh->queue_dropped_events;
    sh->snap.last_packet_ts = sh->last_packet_ts;
    if (sh->writer.anomaly_counts) {
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, sh->writer.anomaly_counts);
        while (g_hash_table_iter_next(&it, &k, &v))
            *counter_slot(sh->snap_anomalies, k) = *(guint64 *)v;
    }
    g_mutex_unlock(&sh->snap_lock);
}

static void
source_snapshot(Worker *w, gboolean finished)
{
    g_mutex_lock(&w->snap_lock);
    w->snap.finished = finished;
    if (w->live && w->handle) {
        struct pcap_stat ps;
        if (pcap_stats(w->handle, &ps) == 0) {
            w->snap.pcap_received = ps.ps_recv;
            w->snap.pcap_dropped = ps.ps_drop;
            w->snap.pcap_ifdropped = ps.ps_ifdrop;
        }
    }
    w->snap.decode = w->decode;
    g_mutex_unlock(&w->snap_lock);
}

static void
queue_push(OtsPipeline *p, Shard *sh, OtsEventBatch *batch)
{
    gboolean live = sh->src->live;
    g_mutex_lock(&p->lock);
    if (batch) {
        while (p->queued_batches >= p->config.queue_batches) {
            if (live) {
                /* Never block live capture: count what is lost. */
                sh->queue_dropped_events += batch->n_events;
                g_mutex_unlock(&p->lock);
                ots_event_batch_free(batch);
                return;
            }
            g_cond_wait(&p->not_full, &p->lock);
        }
        p->queued_batches++;
    }
    /* One eventfd write per wake-up: the main thread drains the queue to
     * empty each time, and clears wake_pending when it finds it empty. */
    gboolean wake = FALSE;
    if (!p->wake_pending &&
        (!batch || live || p->queued_batches >= MIN(OFFLINE_WAKE_BATCHES, p->config.queue_batches))) {
        p->wake_pending = TRUE;
        wake = TRUE;
    }
    g_queue_push_tail(&p->queue, batch);
    g_mutex_unlock(&p->lock);
    if (wake) {
        guint64 one = 1;
        while (write(p->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
            ;
    }
}

#define MAX_SPARE_BATCHES 64

static OtsEventBatch *
batch_alloc(gsize cap, gpointer user)
{
    Shard *sh = user;
    OtsPipeline *p = sh->src->p;
    OtsEventBatch *b = NULL;
    g_mutex_lock(&p->lock);
    if (p->spare->len)
        b = g_ptr_array_steal_index_fast(p->spare, p->spare->len - 1);
    g_mutex_unlock(&p->lock);
    if (!b)
        return ots_event_batch_new(cap);
    ots_event_batch_reset(b);
    ots_buf_reserve(&b->buf, cap);
    return b;
}

static void
batch_recycle(OtsPipeline *p, OtsEventBatch *b)
{
    g_mutex_lock(&p->lock);
    if (p->spare->len < MAX_SPARE_BATCHES) {
        g_ptr_array_add(p->spare, b);
        b = NULL;
    }
    g_mutex_unlock(&p->lock);
    ots_event_batch_free(b);
}

static void
batch_ready(OtsEventBatch *batch, gpointer user)
{
    Shard *sh = user;
    shard_snapshot(sh, FALSE);
    queue_push(sh->src->p, sh, batch);
}

/* Expiry runs on packet time, about once a second (and if time steps back). */
static inline void
shard_expire(Shard *sh, gint64 now)
{
    if (now - sh->last_expire >= G_USEC_PER_SEC || now < sh->last_expire) {
        sh->last_expire = now;
        ots_flow_table_expire(sh->flows, now);
    }
}

/* Takes a reload's registry, if one waits: called between packets. */
static inline void
shard_take_registry(Shard *sh)
{
    if (G_LIKELY(!g_atomic_pointer_get(&sh->next_registry)))
        return;
    OtsDissectRegistry *r = g_atomic_pointer_exchange(&sh->next_registry, NULL);
    if (!r)
        return;
    ots_dissect_context_set_registry(&sh->dctx, r, sh->flows);
    ots_dissect_registry_free(sh->registry);
    sh->registry = r;
}

/* A decoded packet of one of this shard's flows. */
static void
shard_packet(Shard *sh, const OtsPacket *pkt)
{
    sh->last_packet_ts = pkt->ts;
    OtsDirection dir;
    gboolean created;
    OtsFlow *f = ots_flow_table_lookup(sh->flows, pkt, &dir, &created);
    if (G_UNLIKELY(!f))
        return;
    ots_dissect_packet(&sh->dctx, f, dir, pkt, sh->max_ooo_bytes);
    shard_expire(sh, pkt->ts);
}

/* Live, between read bursts: idle flows end on the wall clock, and events
 * do not wait in a half-full batch for longer than BATCH_MAX_AGE. */
static void
shard_idle(Shard *sh)
{
    gint64 now = g_get_real_time();
    if (now - sh->last_expire >= G_USEC_PER_SEC) {
        sh->last_expire = now;
        ots_flow_table_expire(sh->flows, now);
    }
    if (sh->writer.batch && g_get_monotonic_time() - sh->writer.batch->created >= BATCH_MAX_AGE)
        ots_event_writer_flush(&sh->writer);
    else if (!sh->writer.batch || sh->writer.batch->n_events == 0)
        shard_snapshot(sh, FALSE);
}

/* The source ended: every flow ends (unanswered requests and flow events
 * come out now), the last batch goes, and the main thread hears of it. */
static void
shard_finish(Shard *sh)
{
    shard_snapshot(sh, FALSE);
    ots_flow_table_free(sh->flows);
    sh->flows = NULL;
    ots_event_writer_flush(&sh->writer);
    shard_snapshot(sh, TRUE);
    queue_push(sh->src->p, sh, NULL);
}

/* Shard side: gives back a chunk it has read. */
static void
pool_put(Worker *w, Chunk *c)
{
    g_mutex_lock(&w->pool_lock);
    g_ptr_array_add(w->pool, c);
    if (w->pool_wanted && w->pool->len >= w->pool_wanted) {
        w->pool_wanted = 0;
        g_cond_signal(&w->pool_cond);
    }
    g_mutex_unlock(&w->pool_lock);
}

/* Reader side: a free chunk; NULL after LIVE_TIMEOUT_MS without one. */
static Chunk *
pool_get(Worker *w)
{
    Chunk *c = NULL;
    g_mutex_lock(&w->pool_lock);
    if (w->pool->len == 0) {
        gint64 until = g_get_monotonic_time() + LIVE_TIMEOUT_MS * 1000;
        /* pool_put() clears it when the pool holds that many. */
        w->pool_wanted = CHUNKS_REFILL;
        while (w->pool_wanted && g_cond_wait_until(&w->pool_cond, &w->pool_lock, until))
            ;
        w->pool_wanted = 0;
    }
    if (w->pool->len)
        c = g_ptr_array_steal_index_fast(w->pool, w->pool->len - 1);
    g_mutex_unlock(&w->pool_lock);
    return c;
}

static void
shard_run_chunk(Shard *sh, const Chunk *c)
{
    gsize off = 0;
    while (off < c->used) {
        gint64 clock;
        OtsPacket pkt;
        memcpy(&clock, c->data + off, sizeof(clock));
        off += sizeof(clock);
        memcpy(&pkt, c->data + off, sizeof(pkt));
        off += sizeof(pkt);
        /* Flows are stamped as they would be by one thread seeing all. */
        ots_flow_table_advance_clock(sh->flows, clock);
        pkt.payload = c->data + off;
        off += (pkt.payload_len + 7u) & ~(gsize)7u;
        shard_packet(sh, &pkt);
    }
}

static gpointer
shard_main(gpointer data)
{
    Shard *sh = data;
    gboolean live = sh->src->live;
    for (;;) {
        Chunk *c = live ? g_async_queue_timeout_pop(sh->full, LIVE_TIMEOUT_MS * 1000)
                        : g_async_queue_pop(sh->full);
        if (c == &chunk_end)
            break;
        shard_take_registry(sh);
        if (c) {
            shard_run_chunk(sh, c);
            /* Packet time goes on for flows of this shard that went quiet. */
            if (c->now)
                shard_expire(sh, c->now);
            c->used = 0;
            c->now = 0;
            pool_put(sh->src, c);
        }
        if (live)
            shard_idle(sh);
    }
    shard_finish(sh);
    return NULL;
}

/* Reader side: hands the chunk being filled to its shard. Returns FALSE if
 * asked to stop while waiting for an empty chunk. */
static gboolean
shard_send(Worker *w, Shard *sh)
{
    if (sh->filling && (sh->filling->used || sh->filling->now)) {
        g_async_queue_push(sh->full, sh->filling);
        sh->filling = NULL;
    }
    while (!sh->filling) {
        /* A shard that falls behind holds the reader back (files wait;
         * live, the kernel ring fills and pcap counts the drops). */
        sh->filling = pool_get(w);
        if (!sh->filling && g_atomic_int_get(&w->stop))
            return FALSE;
    }
    return TRUE;
}

/* One endpoint to 32 bits: multiply-fold of its address and port (the top
 * half of a 64-bit product depends on every bit below it); ots_fmix32()
 * below does the final mixing. An IPv4 address is loaded as the 4 bytes the
 * decoder stored: wider loads over those fresh stores missed store-to-load
 * forwarding, and perf put most of the reader's hashing time there. */
static inline guint32
endpoint_mix(const OtsIpAddr *a, guint16 port)
{
    guint64 h;
    if (a->family != 6) {
        guint32 v4;
        memcpy(&v4, a->addr, sizeof(v4));
        h = ((guint64)v4 | ((guint64)port << 32)) * G_GUINT64_CONSTANT(0x9e3779b97f4a7c15);
    } else {
        guint64 x[2];
        memcpy(x, a->addr, sizeof(x));
        h = (x[0] ^ ((guint64)port << 48)) * G_GUINT64_CONSTANT(0x9e3779b97f4a7c15) +
            x[1] * G_GUINT64_CONSTANT(0xc2b2ae3d27d4eb4f);
    }
    return (guint32)(h >> 32);
}

/* Both directions of a flow give the same value: each endpoint is mixed on
 * its own, then combined with a commutative sum. (A plain XOR of the two
 * addresses would send every flow between hosts whose addresses differ
 * alike to one shard.) Not the VLAN: the two directions of a routed flow
 * may carry different tags. */
static inline guint
shard_of(const Worker *w, const OtsPacket *pkt)
{
    guint32 h = ots_fmix32(endpoint_mix(&pkt->src, pkt->sport) +
                           endpoint_mix(&pkt->dst, pkt->dport) + pkt->l4_proto);
    return (guint)(((guint64)h * w->n_shards) >> 32);
}

static void
handle_packet(Worker *w, gint64 ts, guint32 caplen, guint32 len, const guint8 *data)
{
    OtsPacket pkt;
    if (ots_decode_packet(w->dlt, data, caplen, len, ts, &pkt, &w->decode) != OTS_DECODE_OK)
        return;
    if (w->n_shards == 1) {
        shard_packet(w->shards[0], &pkt);
        return;
    }
    Shard *sh = w->shards[shard_of(w, &pkt)];
    w->clock = MAX(w->clock, ts);
    G_STATIC_ASSERT(sizeof(OtsPacket) % 8 == 0);
    if (G_UNLIKELY(sizeof(gint64) + sizeof(pkt) + pkt.payload_len > CHUNK_BYTES)) {
        /* Larger than any snaplen libpcap gives; kept within a chunk. */
        pkt.payload_len = CHUNK_BYTES - sizeof(gint64) - sizeof(pkt);
        pkt.truncated = TRUE;
    }
    gsize need = sizeof(gint64) + sizeof(pkt) + ((pkt.payload_len + 7u) & ~(gsize)7u);
    if (sh->filling->used + need > CHUNK_BYTES && !shard_send(w, sh))
        return;
    Chunk *c = sh->filling;
    guint8 *o = c->data + c->used;
    memcpy(o, &w->clock, sizeof(gint64));
    memcpy(o + sizeof(gint64), &pkt, sizeof(pkt));
    memcpy(o + sizeof(gint64) + sizeof(pkt), pkt.payload, pkt.payload_len);
    c->used += need;
    /* Once a second of packet time every shard hears the time, even one
     * that has no packets: its idle flows end on time, as with one shard. */
    if (G_UNLIKELY(ts - w->last_tick >= G_USEC_PER_SEC || ts < w->last_tick)) {
        w->last_tick = ts;
        for (guint i = 0; i < w->n_shards; i++) {
            w->shards[i]->filling->now = ts;
            if (!shard_send(w, w->shards[i]))
                return;
        }
    }
}

static void
pcap_cb(u_char *user, const struct pcap_pkthdr *h, const u_char *data)
{
    handle_packet((Worker *)user, (gint64)h->ts.tv_sec * G_USEC_PER_SEC + h->ts.tv_usec,
                  h->caplen, h->len, data);
}

/* Every 4096 packets of a file: a reload's registry, the counters, a stop. */
static gboolean
file_checkpoint(Worker *w, guint *n)
{
    if (G_LIKELY((++*n & 0xfff) != 0))
        return TRUE;
    if (w->n_shards == 1)
        shard_take_registry(w->shards[0]);
    source_snapshot(w, FALSE);
    return !g_atomic_int_get(&w->stop);
}

static void
run_files(Worker *w)
{
    for (guint i = 0; w->files[i] && !g_atomic_int_get(&w->stop); i++) {
        g_autoptr(GError) err = NULL;
        pcap_t *pc = ots_capture_open_file(w->files[i], &err);
        if (!pc) {
            /* Checked at start-up; a file that vanished since is skipped. */
            g_message("%s", err->message);
            continue;
        }
        w->dlt = pcap_datalink(pc);
        guint n = 0;
        /* libpcap has checked the header and link type; a classic pcap
         * file's records are then read by our own loop (pcap-file.h). */
        OtsPcapFile *pf = ots_pcap_file_open(w->files[i]);
        if (pf) {
            pcap_close(pc);
            OtsPcapRecord r;
            OtsPcapNext rc;
            while ((rc = ots_pcap_file_next(pf, &r, &err)) == OTS_PCAP_RECORD) {
                handle_packet(w, r.ts, r.caplen, r.len, r.data);
                if (!file_checkpoint(w, &n))
                    break;
            }
            if (rc == OTS_PCAP_ERROR)
                g_message("%s: read error: %s", w->files[i], err->message);
            ots_pcap_file_free(pf);
            continue;
        }
        struct pcap_pkthdr *h;
        const u_char *data;
        int rc;
        while ((rc = pcap_next_ex(pc, &h, &data)) == 1) {
            handle_packet(w, (gint64)h->ts.tv_sec * G_USEC_PER_SEC + h->ts.tv_usec, h->caplen,
                          h->len, data);
            if (!file_checkpoint(w, &n))
                break;
        }
        if (rc == PCAP_ERROR)
            g_message("%s: read error: %s", w->files[i], pcap_geterr(pc));
        pcap_close(pc);
    }
}

static void
run_live(Worker *w)
{
    w->dlt = pcap_datalink(w->handle);
    /* pcap's read timeout does not fire on an idle TPACKET_V3 ring: a quiet
     * network would hold the last events (and flow expiry) until the next
     * packet. So: non-blocking handle, poll() with our own timeout. */
    char errbuf[PCAP_ERRBUF_SIZE];
    int fd = pcap_get_selectable_fd(w->handle);
    if (fd >= 0 && pcap_setnonblock(w->handle, 1, errbuf) < 0)
        fd = -1;
    while (!g_atomic_int_get(&w->stop)) {
        if (fd >= 0) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            if (poll(&pfd, 1, LIVE_TIMEOUT_MS) < 0 && errno != EINTR) {
                g_message("capture on %s: poll: %s", w->name, g_strerror(errno));
                break;
            }
        }
        int rc = pcap_dispatch(w->handle, 4096, pcap_cb, (u_char *)w);
        if (rc == PCAP_ERROR) {
            g_message("capture on %s failed: %s", w->name, pcap_geterr(w->handle));
            break;
        }
        if (rc == PCAP_ERROR_BREAK)
            break;
        if (w->n_shards == 1) {
            shard_take_registry(w->shards[0]);
            shard_idle(w->shards[0]);
        } else {
            /* What this burst read goes out now: live events are not held. */
            for (guint i = 0; i < w->n_shards; i++)
                if (w->shards[i]->filling->used && !shard_send(w, w->shards[i]))
                    break;
        }
        source_snapshot(w, FALSE);
    }
}

static gpointer
worker_main(gpointer data)
{
    Worker *w = data;
    if (w->live)
        run_live(w);
    else
        run_files(w);
    source_snapshot(w, FALSE);
    if (w->n_shards == 1) {
        shard_finish(w->shards[0]);
    } else {
        for (guint i = 0; i < w->n_shards; i++) {
            Shard *sh = w->shards[i];
            if (sh->filling && sh->filling->used) {
                g_async_queue_push(sh->full, sh->filling);
                sh->filling = NULL;
            }
            g_async_queue_push(sh->full, &chunk_end);
        }
        for (guint i = 0; i < w->n_shards; i++) {
            g_thread_join(w->shards[i]->thread);
            w->shards[i]->thread = NULL;
        }
    }
    source_snapshot(w, TRUE);
    return NULL;
}

static gboolean
on_wake(gint fd, GIOCondition cond, gpointer user)
{
    OtsPipeline *p = user;
    guint64 v;
    while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    for (;;) {
        g_mutex_lock(&p->lock);
        if (g_queue_is_empty(&p->queue)) {
            p->wake_pending = FALSE;
            g_mutex_unlock(&p->lock);
            break;
        }
        OtsEventBatch *b = g_queue_pop_head(&p->queue);
        if (b) {
            p->queued_batches--;
            g_cond_signal(&p->not_full);
        }
        g_mutex_unlock(&p->lock);
        if (b) {
            p->on_batch(b, p->user);
            batch_recycle(p, b);
        } else if (--p->running == 0) {
            p->on_done(p->user);
        }
    }
    return G_SOURCE_CONTINUE;
}

OtsPipeline *
ots_pipeline_new(const OtsPipelineConfig *config, OtsDissectRegistry *registry,
                 OtsPipelineBatchFunc on_batch, OtsPipelineDoneFunc on_done, gpointer user)
{
    OtsPipeline *p = g_new0(OtsPipeline, 1);
    p->config = *config;
    if (p->config.queue_batches < 2)
        p->config.queue_batches = 2;
    p->registry = ots_dissect_registry_ref(registry);
    p->on_batch = on_batch;
    p->on_done = on_done;
    p->user = user;
    p->workers = g_ptr_array_new();
    g_mutex_init(&p->lock);
    g_cond_init(&p->not_full);
    g_queue_init(&p->queue);
    p->spare = g_ptr_array_new_with_free_func((GDestroyNotify)ots_event_batch_free);
    p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    g_assert(p->wake_fd >= 0);
    p->wake_source = g_unix_fd_add(p->wake_fd, G_IO_IN, on_wake, p);
    return p;
}

static Shard *
shard_new(Worker *w, guint index, guint n)
{
    OtsPipeline *p = w->p;
    Shard *sh = g_new0(Shard, 1);
    sh->src = w;
    sh->index = index;
    ots_event_writer_init(&sh->writer, BATCH_BYTES, batch_ready, sh);
    ots_event_writer_set_alloc(&sh->writer, batch_alloc, sh);
    sh->max_ooo_bytes = p->config.max_ooo_bytes;
    sh->registry = ots_dissect_registry_ref(p->registry);
    ots_dissect_context_init(&sh->dctx, sh->registry, &sh->writer, p->config.max_pdu_bytes,
                             p->config.flow_events);
    /* Every source's shards share the cap alike. */
    sh->dctx.mem_cap = p->config.memcap / MAX(1u, p->workers->len * n);
    OtsFlowConfig fc = {
        .max_flows = MAX(1u, p->config.max_flows / n),
        .tcp_idle_timeout = p->config.tcp_idle_timeout,
        .udp_idle_timeout = p->config.udp_idle_timeout,
        .tcp_closed_linger = 0,
        .server_port = ots_dissect_is_server_port,
        .on_end = ots_dissect_flow_end,
        .user = &sh->dctx,
    };
    sh->flows = ots_flow_table_new(&fc);
    g_mutex_init(&sh->snap_lock);
    sh->snap_anomalies = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    if (n > 1) {
        sh->full = g_async_queue_new();
        sh->filling = pool_get(sh->src);
    }
    return sh;
}

static void
shard_free(Shard *sh)
{
    if (sh->flows)
        ots_flow_table_free(sh->flows);
    ots_event_writer_clear(&sh->writer);
    if (sh->full) {
        Chunk *c;
        while ((c = g_async_queue_try_pop(sh->full)))
            if (c != &chunk_end)
                g_free(c);
        g_async_queue_unref(sh->full);
    }
    g_free(sh->filling);
    ots_dissect_registry_free(sh->registry);
    ots_dissect_registry_free(g_atomic_pointer_exchange(&sh->next_registry, NULL));
    ots_source_stats_clear(&sh->snap);
    g_hash_table_unref(sh->snap_anomalies);
    g_mutex_clear(&sh->snap_lock);
    g_free(sh);
}

static Worker *
worker_new(OtsPipeline *p, const char *name)
{
    Worker *w = g_new0(Worker, 1);
    w->p = p;
    w->name = g_strdup(name);
    w->clock = G_MININT64;
    g_mutex_init(&w->snap_lock);
    w->snap.name = g_strdup(name);
    g_ptr_array_add(p->workers, w);
    return w;
}

void
ots_pipeline_add_live(OtsPipeline *p, const char *name, pcap_t *handle)
{
    Worker *w = worker_new(p, name);
    w->live = TRUE;
    w->snap.live = TRUE;
    w->handle = handle;
}

void
ots_pipeline_add_files(OtsPipeline *p, const char *const *files)
{
    Worker *w = worker_new(p, "files");
    w->files = g_strdupv((char **)files);
}

/* Shards per source: configured, or by default the processors shared out
 * among the sources. One shard runs inline on the reader's thread (no copy
 * of the packet at all). */
static guint
shards_per_source(const OtsPipeline *p)
{
    guint n = p->config.workers;
    if (n == 0) {
        guint sources = MAX(1u, p->workers->len);
        n = (guint)g_get_num_processors() / sources;
    }
    return CLAMP(n, 1u, (guint)MAX_SHARDS);
}

void
ots_pipeline_start(OtsPipeline *p)
{
    g_return_if_fail(!p->started);
    p->started = TRUE;
    guint n = shards_per_source(p);
    for (guint i = 0; i < p->workers->len; i++) {
        Worker *w = g_ptr_array_index(p->workers, i);
        w->n_shards = n;
        if (n > 1) {
            /* Each shard holds one chunk being filled: twice that at least. */
            g_mutex_init(&w->pool_lock);
            g_cond_init(&w->pool_cond);
            w->pool = g_ptr_array_new_with_free_func(g_free);
            for (guint k = 0; k < MAX(CHUNKS_PER_SOURCE, 2 * n); k++)
                g_ptr_array_add(w->pool, g_new0(Chunk, 1));
        }
        for (guint k = 0; k < n; k++)
            w->shards[k] = shard_new(w, k, n);
    }
    p->running = p->workers->len * n;
    for (guint i = 0; i < p->workers->len; i++) {
        Worker *w = g_ptr_array_index(p->workers, i);
        for (guint k = 0; n > 1 && k < n; k++) {
            g_autofree char *sname = g_strdup_printf("ots-cap%u.%u", i, k);
            w->shards[k]->thread = g_thread_new(sname, shard_main, w->shards[k]);
        }
        g_autofree char *tname = g_strdup_printf("ots-cap%u", i);
        w->thread = g_thread_new(tname, worker_main, w);
    }
    if (p->workers->len == 0)
        p->on_done(p->user);
}

void
ots_pipeline_stop(OtsPipeline *p)
{
    for (guint i = 0; i < p->workers->len; i++) {
        Worker *w = g_ptr_array_index(p->workers, i);
        g_atomic_int_set(&w->stop, 1);
        if (w->live && w->handle)
            pcap_breakloop(w->handle);
    }
}

void
ots_pipeline_free(OtsPipeline *p)
{
    if (!p)
        return;
    ots_pipeline_stop(p);
    /* Shards may wait on a full queue: keep draining while joining. */
    for (guint i = 0; i < p->workers->len; i++) {
        Worker *w = g_ptr_array_index(p->workers, i);
        if (w->thread) {
            while (TRUE) {
                g_mutex_lock(&p->lock);
                while (!g_queue_is_empty(&p->queue)) {
                    OtsEventBatch *b = g_queue_pop_head(&p->queue);
                    if (b)
                        p->queued_batches--;
                    ots_event_batch_free(b);
                }
                g_cond_broadcast(&p->not_full);
                g_mutex_unlock(&p->lock);
                g_mutex_lock(&w->snap_lock);
                gboolean done = w->snap.finished;
                g_mutex_unlock(&w->snap_lock);
                if (done)
                    break;
                g_usleep(1000);
            }
            g_thread_join(w->thread);
        }
    }
    g_queue_clear_full(&p->queue, (GDestroyNotify)ots_event_batch_free);
    for (guint i = 0; i < p->workers->len; i++) {
        Worker *w = g_ptr_array_index(p->workers, i);
        for (guint k = 0; k < w->n_shards; k++)
            shard_free(w->shards[k]);
        if (w->pool) {
            g_ptr_array_unref(w->pool);
            g_mutex_clear(&w->pool_lock);
            g_cond_clear(&w->pool_cond);
        }
        if (w->handle)
            pcap_close(w->handle);
        g_strfreev(w->files);
        g_free(w->name);
        ots_source_stats_clear(&w->snap);
        g_mutex_clear(&w->snap_lock);
        g_free(w);
    }
    g_ptr_array_unref(p->workers);
    g_ptr_array_unref(p->spare);
    ots_dissect_registry_free(p->registry);
    g_source_remove(p->wake_source);
    close(p->wake_fd);
    g_mutex_clear(&p->lock);
    g_cond_clear(&p->not_full);
    g_free(p);
}

void
ots_pipeline_set_registry(OtsPipeline *p, OtsDissectRegistry *registry)
{
    ots_dissect_registry_free(p->registry);
    p->registry = ots_dissect_registry_ref(registry);
    for (guint i = 0; i < p->workers->len; i++) {
        Worker *w = g_ptr_array_index(p->workers, i);
        for (guint k = 0; k < w->n_shards; k++) {
            OtsDissectRegistry *old = g_atomic_pointer_exchange(&w->shards[k]->next_registry,
                                                                ots_dissect_registry_ref(registry));
            ots_dissect_registry_free(old);
        }
    }
}

guint
ots_pipeline_n_sources(OtsPipeline *p)
{
    return p->workers->len;
}

/* Adds the guint64 counters of @b to @a (structs of guint64 only). */
static void
sum_u64(gpointer a, gconstpointer b, gsize size)
{
    guint64 *x = a;
    const guint64 *y = b;
    for (gsize i = 0; i < size / sizeof(guint64); i++)
        x[i] += y[i];
}

void
ots_pipeline_get_stats(OtsPipeline *p, guint i, OtsSourceStats *out)
{
    Worker *w = g_ptr_array_index(p->workers, i);
    g_mutex_lock(&w->snap_lock);
    *out = w->snap;
    out->name = g_strdup(w->snap.name);
    g_mutex_unlock(&w->snap_lock);
    out->shards = w->n_shards;
    G_STATIC_ASSERT(sizeof(OtsTcpStats) % sizeof(guint64) == 0);
    G_STATIC_ASSERT(sizeof(OtsDissectStats) % sizeof(guint64) == 0);
    for (guint k = 0; k < w->n_shards; k++) {
        Shard *sh = w->shards[k];
        g_mutex_lock(&sh->snap_lock);
        const OtsSourceStats *s = &sh->snap;
        out->flows.created += s->flows.created;
        out->flows.ended += s->flows.ended;
        out->flows.evicted += s->flows.evicted;
        out->flows.timed_out += s->flows.timed_out;
        out->flows.active += s->flows.active;
        /* Each shard's own peak: their sum bounds the peak from above. */
        out->flows.peak_active += s->flows.peak_active;
        sum_u64(&out->tcp, &s->tcp, sizeof(s->tcp));
        sum_u64(&out->dissect, &s->dissect, sizeof(s->dissect));
        sum_u64(out->events, s->events, sizeof(s->events));
        out->anomalies += s->anomalies;
        out->queue_dropped_events += s->queue_dropped_events;
        out->last_packet_ts = MAX(out->last_packet_ts, s->last_packet_ts);
        out->finished = out->finished && s->finished;
        g_mutex_unlock(&sh->snap_lock);
    }
}

void
ots_source_stats_clear(OtsSourceStats *s)
{
    g_clear_pointer(&s->name, g_free);
}

GHashTable *
ots_pipeline_get_anomalies(OtsPipeline *p)
{
    GHashTable *sum = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    for (guint i = 0; i < p->workers->len; i++) {
        Worker *w = g_ptr_array_index(p->workers, i);
        for (guint k = 0; k < w->n_shards; k++) {
            Shard *sh = w->shards[k];
            g_mutex_lock(&sh->snap_lock);
            GHashTableIter it;
            gpointer key, v;
            g_hash_table_iter_init(&it, sh->snap_anomalies);
            while (g_hash_table_iter_next(&it, &key, &v))
                *counter_slot(sum, key) += *(guint64 *)v;
            g_mutex_unlock(&sh->snap_lock);
        }
    }
    return sum;
}
