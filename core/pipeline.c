/* SPDX-License-Identifier: Apache-2.0 */
#include "core/pipeline.h"
#include "core/capture/capture.h"

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
 * events. Live, every batch wakes it at once. */
#define OFFLINE_WAKE_BATCHES 8

typedef struct {
    OtsPipeline *p;
    char *name;
    gboolean live;
    pcap_t *handle;    /* live */
    GStrv files;       /* offline */
    GThread *thread;
    gint stop;         /* atomic */

    /* Worker-owned state. */
    int dlt;
    OtsFlowTable *flows;
    OtsEventWriter writer;
    OtsDissectContext dctx;
    OtsDecodeStats decode;
    gint64 last_expire;
    gint64 last_packet_ts;
    guint64 queue_dropped_events;

    /* Published for the main thread. */
    GMutex snap_lock;
    OtsSourceStats snap;
    GHashTable *snap_anomalies;
} Worker;

struct _OtsPipeline {
    OtsPipelineConfig config;
    const OtsDissectRegistry *registry;
    OtsPipelineBatchFunc on_batch;
    OtsPipelineDoneFunc on_done;
    gpointer user;
    GPtrArray *workers;

    /* Bounded queue to the main thread. NULL items mean "a worker finished". */
    GMutex lock;
    GCond not_full;
    GQueue queue;
    guint queued_batches;
    gboolean wake_pending; /* the eventfd was written, the queue not yet found empty */
    int wake_fd;
    guint wake_source;
    guint running;
    gboolean started;
};

static void
worker_snapshot(Worker *w, gboolean finished)
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
    if (w->flows)
        ots_flow_table_get_stats(w->flows, &w->snap.flows);
    w->snap.tcp = w->dctx.tcp;
    w->snap.dissect = w->dctx.stats;
    memcpy(w->snap.events, w->writer.counts, sizeof(w->snap.events));
    w->snap.anomalies = w->writer.anomalies;
    w->snap.queue_dropped_events = w->queue_dropped_events;
    w->snap.last_packet_ts = w->last_packet_ts;
    if (w->writer.anomaly_counts &&
        g_hash_table_size(w->writer.anomaly_counts) != g_hash_table_size(w->snap_anomalies)) {
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, w->writer.anomaly_counts);
        while (g_hash_table_iter_next(&it, &k, &v))
            if (!g_hash_table_contains(w->snap_anomalies, k))
                g_hash_table_insert(w->snap_anomalies, g_strdup(k), g_new0(guint64, 1));
    }
    if (w->writer.anomaly_counts) {
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, w->writer.anomaly_counts);
        while (g_hash_table_iter_next(&it, &k, &v))
            *(guint64 *)g_hash_table_lookup(w->snap_anomalies, k) = *(guint64 *)v;
    }
    g_mutex_unlock(&w->snap_lock);
}

static void
queue_push(OtsPipeline *p, Worker *w, OtsEventBatch *batch)
{
    g_mutex_lock(&p->lock);
    if (batch) {
        while (p->queued_batches >= p->config.queue_batches) {
            if (w->live) {
                /* Never block live capture: count what is lost. */
                w->queue_dropped_events += batch->n_events;
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
        (!batch || w->live ||
         p->queued_batches >= MIN(OFFLINE_WAKE_BATCHES, p->config.queue_batches))) {
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

static void
batch_ready(OtsEventBatch *batch, gpointer user)
{
    Worker *w = user;
    worker_snapshot(w, FALSE);
    queue_push(w->p, w, batch);
}

static void
handle_packet(Worker *w, const struct pcap_pkthdr *h, const guint8 *data)
{
    gint64 ts = (gint64)h->ts.tv_sec * G_USEC_PER_SEC + h->ts.tv_usec;
    OtsPacket pkt;
    if (ots_decode_packet(w->dlt, data, h->caplen, h->len, ts, &pkt, &w->decode) != OTS_DECODE_OK)
        return;
    w->last_packet_ts = ts;
    OtsDirection dir;
    gboolean created;
    OtsFlow *f = ots_flow_table_lookup(w->flows, &pkt, &dir, &created);
    if (G_UNLIKELY(!f))
        return;
    ots_dissect_packet(&w->dctx, f, dir, &pkt, w->p->config.max_ooo_bytes);
    /* Expiry runs on packet time, about once a second (and if time steps back). */
    if (ts - w->last_expire >= G_USEC_PER_SEC || ts < w->last_expire) {
        w->last_expire = ts;
        ots_flow_table_expire(w->flows, ts);
    }
}

static void
pcap_cb(u_char *user, const struct pcap_pkthdr *h, const u_char *data)
{
    handle_packet((Worker *)user, h, data);
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
        struct pcap_pkthdr *h;
        const u_char *data;
        int rc;
        guint n = 0;
        while ((rc = pcap_next_ex(pc, &h, &data)) == 1) {
            handle_packet(w, h, data);
            if (G_UNLIKELY((++n & 0xfff) == 0) && g_atomic_int_get(&w->stop))
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
        gint64 now = g_get_real_time();
        /* A quiet network: idle flows still end, on the wall clock. */
        if (now - w->last_expire >= G_USEC_PER_SEC) {
            w->last_expire = now;
            ots_flow_table_expire(w->flows, now);
        }
        if (w->writer.batch && g_get_monotonic_time() - w->writer.batch->created >= BATCH_MAX_AGE)
            ots_event_writer_flush(&w->writer);
        else if (!w->writer.batch || w->writer.batch->n_events == 0)
            worker_snapshot(w, FALSE);
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
    /* Ends every flow: unanswered requests and flow events come out now. */
    worker_snapshot(w, FALSE);
    ots_flow_table_free(w->flows);
    w->flows = NULL;
    ots_event_writer_flush(&w->writer);
    worker_snapshot(w, TRUE);
    queue_push(w->p, w, NULL);
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
        } else if (--p->running == 0) {
            p->on_done(p->user);
        }
    }
    return G_SOURCE_CONTINUE;
}

OtsPipeline *
ots_pipeline_new(const OtsPipelineConfig *config, const OtsDissectRegistry *registry,
                 OtsPipelineBatchFunc on_batch, OtsPipelineDoneFunc on_done, gpointer user)
{
    OtsPipeline *p = g_new0(OtsPipeline, 1);
    p->config = *config;
    if (p->config.queue_batches < 2)
        p->config.queue_batches = 2;
    p->registry = registry;
    p->on_batch = on_batch;
    p->on_done = on_done;
    p->user = user;
    p->workers = g_ptr_array_new();
    g_mutex_init(&p->lock);
    g_cond_init(&p->not_full);
    g_queue_init(&p->queue);
    p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    g_assert(p->wake_fd >= 0);
    p->wake_source = g_unix_fd_add(p->wake_fd, G_IO_IN, on_wake, p);
    return p;
}

static Worker *
worker_new(OtsPipeline *p, const char *name)
{
    Worker *w = g_new0(Worker, 1);
    w->p = p;
    w->name = g_strdup(name);
    ots_event_writer_init(&w->writer, BATCH_BYTES, batch_ready, w);
    ots_dissect_context_init(&w->dctx, p->registry, &w->writer, p->config.max_pdu_bytes,
                             p->config.flow_events);
    OtsFlowConfig fc = {
        .max_flows = p->config.max_flows,
        .tcp_idle_timeout = p->config.tcp_idle_timeout,
        .udp_idle_timeout = p->config.udp_idle_timeout,
        .tcp_closed_linger = 0,
        .server_port = ots_dissect_is_server_port,
        .on_end = ots_dissect_flow_end,
        .user = &w->dctx,
    };
    w->flows = ots_flow_table_new(&fc);
    g_mutex_init(&w->snap_lock);
    w->snap.name = g_strdup(name);
    w->snap_anomalies = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
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

void
ots_pipeline_start(OtsPipeline *p)
{
    g_return_if_fail(!p->started);
    p->started = TRUE;
    p->running = p->workers->len;
    for (guint i = 0; i < p->workers->len; i++) {
        Worker *w = g_ptr_array_index(p->workers, i);
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
    /* Workers may wait on a full queue: keep draining while joining. */
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
        if (w->flows)
            ots_flow_table_free(w->flows);
        ots_event_writer_clear(&w->writer);
        if (w->handle)
            pcap_close(w->handle);
        g_strfreev(w->files);
        g_free(w->name);
        ots_source_stats_clear(&w->snap);
        g_hash_table_unref(w->snap_anomalies);
        g_mutex_clear(&w->snap_lock);
        g_free(w);
    }
    g_ptr_array_unref(p->workers);
    g_source_remove(p->wake_source);
    close(p->wake_fd);
    g_mutex_clear(&p->lock);
    g_cond_clear(&p->not_full);
    g_free(p);
}

guint
ots_pipeline_n_sources(OtsPipeline *p)
{
    return p->workers->len;
}

void
ots_pipeline_get_stats(OtsPipeline *p, guint i, OtsSourceStats *out)
{
    Worker *w = g_ptr_array_index(p->workers, i);
    g_mutex_lock(&w->snap_lock);
    *out = w->snap;
    out->name = g_strdup(w->snap.name);
    g_mutex_unlock(&w->snap_lock);
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
        g_mutex_lock(&w->snap_lock);
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, w->snap_anomalies);
        while (g_hash_table_iter_next(&it, &k, &v)) {
            guint64 *n = g_hash_table_lookup(sum, k);
            if (!n) {
                n = g_new0(guint64, 1);
                g_hash_table_insert(sum, g_strdup(k), n);
            }
            *n += *(guint64 *)v;
        }
        g_mutex_unlock(&w->snap_lock);
    }
    return sum;
}
