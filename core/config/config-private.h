/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Shared between config.c (loading, validation, errors), settings.c (the
 * read-only OtsSettings view) and schema.c (the core schema and the embedded
 * defaults). Nothing outside core/config/ includes this. */

#include <libconfig.h>

#include "config.h"

/* Nesting deeper than this is refused at load, so every walk below is
 * bounded whatever the input. */
#define OTS_CONFIG_MAX_DEPTH 32

/* Name given to the embedded defaults in messages and locations. */
#define OTS_CONFIG_DEFAULTS_NAME "<defaults>"

/* One node a group setting (the root, a named group, a group in a list).
 * Every node is built at load and never changes afterwards, so lookups from
 * any thread need no lock. The libconfig setting's hook points back to its
 * node. */
struct _OtsSettings {
    const config_setting_t *setting;
    /* Answers for the keys this group does not set (the embedded defaults'
     * group of the same path), or NULL. */
    const OtsSettings *fallback;
    /* Config name, for settings that carry no source file (text loaded from
     * a string, or the main file, which is parsed from memory). */
    const char *name;
};

/* schema.c */
extern const char ots_config_default_text[];
/* Per-element defaults for lists of groups: one element per list, at the
 * list's path. */
extern const char ots_config_template_text[];

typedef gboolean (*OtsConfigCheckFunc)(const config_setting_t *setting, const OtsSettingSpec *spec,
                                       const char *path, const char *name, GError **error);

/* Checks of the core schema that a spec table cannot say (sensor.id's
 * characters, logging.modules, unique interface names). Called for each value
 * once its generic checks have passed. */
gboolean ots_config_core_check(const config_setting_t *setting, const OtsSettingSpec *spec,
                               const char *path, const char *name, GError **error);

/* config.c */
const char *ots_config_type_name(int libconfig_type);
/* "file:line" (or "file" when the setting has no line); file names of
 * included files are completed with the include directory. (transfer full) */
char *ots_config_setting_location(const config_setting_t *setting, const char *name);
/* Sets "LOCATION: PATH: MESSAGE" (LOCATION as above; no "PATH: " when @path
 * is NULL or empty). */
void ots_config_set_error_at(GError **error, OtsConfigError code, const config_setting_t *where,
                             const char *name, const char *path, const char *fmt, ...)
    G_GNUC_PRINTF(6, 7);
/* "parent.key" / "key" (transfer full) */
char *ots_config_join_path(const char *parent, const char *key);
/* A user string made safe to print: escaped, shortened. (transfer full) */
char *ots_config_quote(const char *value);

/* settings.c */
/* Builds a node for @root and every group below it (depth already checked),
 * appending them to @nodes (which frees them). Returns the root's node. */
OtsSettings *ots_settings_tree_build(config_setting_t *root, const char *name, GPtrArray *nodes);
/* The node built for a group setting, or NULL. */
const OtsSettings *ots_settings_node(const config_setting_t *setting);
/* The setting @key (a dotted path, "a.b[2].c" allowed) answers in @s, looking
 * into the fallbacks; @owner gets the node whose setting holds it. */
const config_setting_t *ots_settings_lookup(const OtsSettings *s, const char *key,
                                            const OtsSettings **owner);
