/* SPDX-License-Identifier: Apache-2.0 */
#include "core/dissect/dissect.h"

#include <gio/gio.h>
#include <string.h>

/* Port maps hold 1 + the entry index (0: no dissector), 64 KiB each, so the
 * per-flow dispatch is one array load. */
struct _OtsDissectRegistry {
    gint ref; /* atomic: a reload hands a new registry to running shards */
    GPtrArray *entries;
    guint8 tcp_map[65536];
    guint8 udp_map[65536];
};

static void
entry_free(gpointer p)
{
    OtsDissectorEntry *e = p;
    g_array_unref(e->tcp_ports);
    g_array_unref(e->udp_ports);
    g_free(e);
}

OtsDissectRegistry *
ots_dissect_registry_new(void)
{
    OtsDissectRegistry *r = g_new0(OtsDissectRegistry, 1);
    r->ref = 1;
    r->entries = g_ptr_array_new_with_free_func(entry_free);
    return r;
}

OtsDissectRegistry *
ots_dissect_registry_ref(OtsDissectRegistry *r)
{
    g_atomic_int_inc(&r->ref);
    return r;
}

void
ots_dissect_registry_free(OtsDissectRegistry *r)
{
    if (!r || !g_atomic_int_dec_and_test(&r->ref))
        return;
    g_ptr_array_unref(r->entries);
    g_free(r);
}

static GArray *
ports_from_list(const guint16 *list)
{
    GArray *a = g_array_new(FALSE, FALSE, sizeof(guint16));
    for (; list && *list; list++)
        g_array_append_val(a, *list);
    return a;
}

static void
claim_ports(OtsDissectRegistry *r, guint8 *map, const GArray *ports, guint index,
            const char *l4, GString *conflicts)
{
    for (guint i = 0; i < ports->len; i++) {
        guint16 p = g_array_index(ports, guint16, i);
        if (map[p] && map[p] != index + 1) {
            const OtsDissectorEntry *other = g_ptr_array_index(r->entries, map[p] - 1);
            g_string_append_printf(conflicts, "%s%s port %u already belongs to %s",
                                   conflicts->len ? "; " : "", l4, p, other->info->name);
            continue;
        }
        map[p] = (guint8)(index + 1);
    }
}

OtsDissectorEntry *
ots_dissect_registry_add(OtsDissectRegistry *r, const OtsDissectorInfo *info, gboolean enabled,
                         gboolean heuristic, const GArray *tcp_ports, const GArray *udp_ports,
                         GError **error)
{
    g_return_val_if_fail(r && info && info->parse, NULL);
    if (r->entries->len >= OTS_MAX_DISSECTORS) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "more than %d dissectors",
                    OTS_MAX_DISSECTORS);
        return NULL;
    }
    OtsDissectorEntry *e = g_new0(OtsDissectorEntry, 1);
    e->info = info;
    e->index = r->entries->len;
    e->enabled = enabled;
    e->heuristic = heuristic && info->probe != NULL;
    e->tcp_ports = tcp_ports ? g_array_copy((GArray *)tcp_ports) : ports_from_list(info->tcp_ports);
    e->udp_ports = udp_ports ? g_array_copy((GArray *)udp_ports) : ports_from_list(info->udp_ports);
    g_ptr_array_add(r->entries, e);
    if (enabled) {
        g_autoptr(GString) conflicts = g_string_new(NULL);
        claim_ports(r, r->tcp_map, e->tcp_ports, e->index, "tcp", conflicts);
        claim_ports(r, r->udp_map, e->udp_ports, e->index, "udp", conflicts);
        if (conflicts->len)
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS, "dissector %s: %s", info->name,
                        conflicts->str);
    }
    return e;
}

guint
ots_dissect_registry_size(const OtsDissectRegistry *r)
{
    return r->entries->len;
}

OtsDissectorEntry *
ots_dissect_registry_get(const OtsDissectRegistry *r, guint i)
{
    return i < r->entries->len ? g_ptr_array_index(r->entries, i) : NULL;
}

const OtsDissectorEntry *
ots_dissect_registry_lookup(const OtsDissectRegistry *r, const char *name)
{
    for (guint i = 0; i < r->entries->len; i++) {
        const OtsDissectorEntry *e = g_ptr_array_index(r->entries, i);
        if (strcmp(e->info->name, name) == 0)
            return e;
    }
    return NULL;
}

const OtsDissectorEntry *
ots_dissect_registry_port(const OtsDissectRegistry *r, guint8 l4, guint16 port)
{
    guint8 idx = l4 == OTS_L4_TCP ? r->tcp_map[port] : l4 == OTS_L4_UDP ? r->udp_map[port] : 0;
    return idx ? g_ptr_array_index(r->entries, idx - 1) : NULL;
}
