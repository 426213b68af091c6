/* SPDX-License-Identifier: Apache-2.0 */
#include "core/plugin/loader.h"
#include "ots-build-config.h"

#include <string.h>

G_DEFINE_QUARK(ots-plugin-error-quark, ots_plugin_error)

static void
plugin_free(gpointer p)
{
    OtsPlugin *pl = p;
    /* Modules stay mapped: descriptors and callbacks may still be referenced
     * by flows being torn down. The daemon loads each file once. */
    g_free(pl->path);
    g_free(pl);
}

OtsPluginSet *
ots_plugin_set_new(void)
{
    OtsPluginSet *set = g_new0(OtsPluginSet, 1);
    set->plugins = g_ptr_array_new_with_free_func(plugin_free);
    set->refused = g_ptr_array_new_with_free_func(g_free);
    return set;
}

void
ots_plugin_set_free(OtsPluginSet *set)
{
    if (!set)
        return;
    g_ptr_array_unref(set->plugins);
    g_ptr_array_unref(set->refused);
    g_strfreev(set->disable);
    g_free(set);
}

static gboolean
valid_name(const char *name)
{
    if (!name || !*name || strlen(name) > 32)
        return FALSE;
    for (const char *p = name; *p; p++)
        if (!g_ascii_islower(*p) && !g_ascii_isdigit(*p) && *p != '_' && *p != '-')
            return FALSE;
    return TRUE;
}

static gboolean
check_descriptor(const OtsPluginHeader *h, GError **error)
{
    if (h->kind != OTS_PLUGIN_KIND_DISSECTOR && h->kind != OTS_PLUGIN_KIND_TRANSPORT) {
        g_set_error(error, OTS_PLUGIN_ERROR, OTS_PLUGIN_ERROR_INVALID, "unknown plugin kind %u",
                    h->kind);
        return FALSE;
    }
    if (!valid_name(h->name)) {
        g_set_error(error, OTS_PLUGIN_ERROR, OTS_PLUGIN_ERROR_INVALID,
                    "invalid plugin name (lower case letters, digits, '_' or '-', 1-32 chars)");
        return FALSE;
    }
    if (h->kind == OTS_PLUGIN_KIND_DISSECTOR) {
        const OtsDissectorInfo *d = (const OtsDissectorInfo *)h;
        if (!d->parse) {
            g_set_error(error, OTS_PLUGIN_ERROR, OTS_PLUGIN_ERROR_INVALID,
                        "dissector %s has no parse function", h->name);
            return FALSE;
        }
        if ((d->state_new == NULL) != (d->state_free == NULL)) {
            g_set_error(error, OTS_PLUGIN_ERROR, OTS_PLUGIN_ERROR_INVALID,
                        "dissector %s must set both state_new and state_free or neither",
                        h->name);
            return FALSE;
        }
    } else {
        const OtsTransportInfo *t = (const OtsTransportInfo *)h;
        if (!t->create || !t->destroy || !t->connect_async || !t->connect_finish) {
            g_set_error(error, OTS_PLUGIN_ERROR, OTS_PLUGIN_ERROR_INVALID,
                        "transport %s lacks create/destroy/connect_async/connect_finish",
                        h->name);
            return FALSE;
        }
    }
    return TRUE;
}

static void
refuse(OtsPluginSet *set, const char *path, GError *err)
{
    g_ptr_array_add(set->refused, g_strdup_printf("%s: %s", path, err->message));
}

gboolean
ots_plugin_set_load_file(OtsPluginSet *set, const char *path, GError **error)
{
    GError *err = NULL;
    GModule *module = g_module_open(path, G_MODULE_BIND_LAZY | G_MODULE_BIND_LOCAL);
    if (!module) {
        g_set_error(&err, OTS_PLUGIN_ERROR, OTS_PLUGIN_ERROR_OPEN, "cannot load: %s",
                    g_module_error());
        goto fail;
    }
    OtsPluginGetInfoFunc get_info = NULL;
    if (!g_module_symbol(module, OTS_PLUGIN_ENTRY_SYMBOL, (gpointer *)&get_info) || !get_info) {
        g_set_error(&err, OTS_PLUGIN_ERROR, OTS_PLUGIN_ERROR_SYMBOL,
                    "not an otsensor plugin (no %s symbol)", OTS_PLUGIN_ENTRY_SYMBOL);
        goto fail_close;
    }
    const OtsPluginHeader *h = get_info();
    /* The ABI first: nothing else in the descriptor is trusted before this. */
    if (!h || h->abi_major != OTS_ABI_MAJOR || h->abi_minor > OTS_ABI_MINOR) {
        g_set_error(&err, OTS_PLUGIN_ERROR, OTS_PLUGIN_ERROR_ABI,
                    "built for SDK ABI %u.%u, this otsensord has ABI %u.%u (major must match, "
                    "minor at most ours); not loaded",
                    h ? h->abi_major : 0, h ? h->abi_minor : 0, OTS_ABI_MAJOR, OTS_ABI_MINOR);
        goto fail_close;
    }
    if (!check_descriptor(h, &err))
        goto fail_close;
    if (set->disable && g_strv_contains((const char *const *)set->disable, h->name)) {
        g_info("plugin %s (%s) is disabled by plugins.disable", h->name, path);
        g_module_close(module);
        return FALSE;
    }
    if (ots_plugin_set_find(set, h->kind, h->name)) {
        g_set_error(&err, OTS_PLUGIN_ERROR, OTS_PLUGIN_ERROR_DUPLICATE,
                    "a plugin named %s is already loaded; this one is ignored", h->name);
        goto fail_close;
    }
    OtsPlugin *pl = g_new0(OtsPlugin, 1);
    pl->module = module;
    pl->path = g_strdup(path);
    pl->header = h;
    g_module_make_resident(module);
    g_ptr_array_add(set->plugins, pl);
    g_info("loaded %s plugin %s %s from %s",
           h->kind == OTS_PLUGIN_KIND_DISSECTOR ? "dissector" : "transport", h->name,
           h->version ? h->version : "?", path);
    return TRUE;

fail_close:
    g_module_close(module);
fail:
    refuse(set, path, err);
    g_propagate_error(error, err);
    return FALSE;
}

static gint
cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void
ots_plugin_set_load_dir(OtsPluginSet *set, const char *dir, guint depth)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    if (!d)
        return;
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    const char *name;
    while ((name = g_dir_read_name(d)))
        g_ptr_array_add(names, g_strdup(name));
    /* Sorted, so load order (and so port conflicts) does not depend on readdir. */
    g_ptr_array_sort(names, cmp_str);
    for (guint i = 0; i < names->len; i++) {
        g_autofree char *path = g_build_filename(dir, names->pdata[i], NULL);
        if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
            if (depth > 0)
                ots_plugin_set_load_dir(set, path, depth - 1);
            continue;
        }
        if (!g_str_has_suffix(path, ".so"))
            continue;
        g_autoptr(GError) err = NULL;
        if (!ots_plugin_set_load_file(set, path, &err) && err)
            g_message("plugin %s refused: %s", path, err->message);
    }
}

const OtsPlugin *
ots_plugin_set_find(const OtsPluginSet *set, OtsPluginKind kind, const char *name)
{
    for (guint i = 0; i < set->plugins->len; i++) {
        const OtsPlugin *pl = g_ptr_array_index(set->plugins, i);
        if (pl->header->kind == (guint32)kind && strcmp(pl->header->name, name) == 0)
            return pl;
    }
    return NULL;
}

const char *
ots_plugin_default_dir(guint *depth)
{
    static char *exe;
    if (!exe)
        exe = g_file_read_link("/proc/self/exe", NULL);
    const char *root = OTS_BUILD_ROOT;
    gsize n = strlen(root);
    if (exe && strncmp(exe, root, n) == 0 && exe[n] == '/') {
        *depth = 3;
        return OTS_BUILD_PLUGINDIR;
    }
    *depth = 0;
    return OTS_PLUGINDIR;
}
