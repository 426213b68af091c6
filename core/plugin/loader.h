/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Finds and loads plugins (GModule, G_MODULE_BIND_LOCAL). The loader checks
 * the ABI in the descriptor header before reading anything else: the major
 * must equal OTS_ABI_MAJOR, the minor may be at most OTS_ABI_MINOR. A plugin
 * that fails is refused with a message naming the file and both versions,
 * and the others still load. */

#include <glib.h>
#include <gmodule.h>
#include <otsensor/dissector.h>
#include <otsensor/transport.h>

G_BEGIN_DECLS

#define OTS_PLUGIN_ERROR (ots_plugin_error_quark())
GQuark ots_plugin_error_quark(void);

typedef enum {
    OTS_PLUGIN_ERROR_OPEN,     /* dlopen failed */
    OTS_PLUGIN_ERROR_SYMBOL,   /* no ots_plugin_get_info */
    OTS_PLUGIN_ERROR_ABI,      /* built for another ABI */
    OTS_PLUGIN_ERROR_INVALID,  /* bad descriptor (kind, name, missing callbacks) */
    OTS_PLUGIN_ERROR_DUPLICATE,/* a plugin of that name is already loaded */
} OtsPluginError;

typedef struct {
    GModule *module; /* NULL for built-in descriptors (tests) */
    char *path;
    const OtsPluginHeader *header;
} OtsPlugin;

typedef struct {
    GPtrArray *plugins; /* OtsPlugin */
    GPtrArray *refused; /* char *: "FILE: reason" */
    GStrv disable;      /* plugin names not to load (plugins.disable) */
} OtsPluginSet;

OtsPluginSet *ots_plugin_set_new(void);
void ots_plugin_set_free(OtsPluginSet *set);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(OtsPluginSet, ots_plugin_set_free)

/* Loads one file. On refusal returns FALSE with @error set (and adds the
 * message to set->refused). A plugin whose name is in set->disable is
 * unloaded again: FALSE without an error. */
gboolean ots_plugin_set_load_file(OtsPluginSet *set, const char *path, GError **error);

/* Loads every *.so in @dir (recursing @depth levels, for the build tree),
 * skipping disabled names. Refusals are logged with g_message and kept in
 * set->refused. */
void ots_plugin_set_load_dir(OtsPluginSet *set, const char *dir, guint depth);

const OtsPlugin *ots_plugin_set_find(const OtsPluginSet *set, OtsPluginKind kind,
                                     const char *name);

/* The default plugin directory: the build tree's when this binary runs from
 * it (so ./build/core/otsensord finds the in-tree plugins), else the
 * installed one. *@depth says how deep to look. */
const char *ots_plugin_default_dir(guint *depth);

G_END_DECLS
