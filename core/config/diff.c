/* SPDX-License-Identifier: Apache-2.0 */

/* What differs between two configurations, by key path (a reload names the
 * settings that only a restart applies). Values are compared as the daemon
 * reads them, defaults included, and never copied out: the result holds
 * key paths only, so a secret cannot leak through it. */

#include <string.h>

#include "config-private.h"

typedef struct {
    GPtrArray *paths; /* NULL: only whether anything differs */
    gboolean differs;
} Diff;

static void diff_group(Diff *d, const OtsSettings *a, const OtsSettings *b,
                       const OtsSettingSpec *spec, const char *path, guint depth);

static void
report(Diff *d, const char *path)
{
    d->differs = TRUE;
    if (d->paths == NULL)
        return;
    for (guint i = 0; i < d->paths->len; i++)
        if (strcmp(g_ptr_array_index(d->paths, i), path) == 0)
            return;
    g_ptr_array_add(d->paths, g_strdup(path));
}

static gboolean
is_int(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_INT || config_setting_type(s) == CONFIG_TYPE_INT64;
}

static gboolean
scalar_equal(const config_setting_t *x, const config_setting_t *y)
{
    if (is_int(x) && is_int(y))
        return config_setting_get_int64(x) == config_setting_get_int64(y);
    if (config_setting_type(x) != config_setting_type(y))
        return FALSE;
    switch (config_setting_type(x)) {
    case CONFIG_TYPE_FLOAT:
        return config_setting_get_float(x) == config_setting_get_float(y);
    case CONFIG_TYPE_BOOL:
        return !config_setting_get_bool(x) == !config_setting_get_bool(y);
    case CONFIG_TYPE_STRING:
        return g_strcmp0(config_setting_get_string(x), config_setting_get_string(y)) == 0;
    default:
        return FALSE;
    }
}

/* Two values of any kind; groups through their nodes, so the keys an
 * element of a list leaves out answer from its defaults on both sides. */
static gboolean
value_equal(const config_setting_t *x, const config_setting_t *y, const OtsSettingSpec *children,
            guint depth)
{
    if (depth > OTS_CONFIG_MAX_DEPTH)
        return FALSE;
    if (config_setting_is_group(x) && config_setting_is_group(y)) {
        Diff sub = {0};
        diff_group(&sub, ots_settings_node(x), ots_settings_node(y), children, "", depth + 1);
        return !sub.differs;
    }
    gboolean xl = config_setting_is_list(x) || config_setting_is_array(x);
    gboolean yl = config_setting_is_list(y) || config_setting_is_array(y);
    if (xl || yl) {
        int n = config_setting_length(x);
        if (!xl || !yl || n != config_setting_length(y))
            return FALSE;
        for (int i = 0; i < n; i++)
            if (!value_equal(config_setting_get_elem(x, (unsigned)i),
                             config_setting_get_elem(y, (unsigned)i), children, depth + 1))
                return FALSE;
        return TRUE;
    }
    if (config_setting_is_group(x) || config_setting_is_group(y))
        return FALSE;
    return scalar_equal(x, y);
}

/* The children of a map ("dissectors", "transports"): each by its own path. */
static void
diff_map(Diff *d, const OtsSettings *a, const OtsSettings *b, const OtsSettingSpec *children,
         const char *path, guint depth)
{
    g_autoptr(GPtrArray) keys = ots_settings_get_keys(a);
    g_autoptr(GPtrArray) more = ots_settings_get_keys(b);
    for (guint i = 0; i < more->len; i++) {
        gboolean seen = FALSE;
        for (guint k = 0; k < keys->len && !seen; k++)
            seen = strcmp(g_ptr_array_index(keys, k), g_ptr_array_index(more, i)) == 0;
        if (!seen)
            g_ptr_array_add(keys, g_ptr_array_index(more, i));
    }
    for (guint i = 0; i < keys->len; i++) {
        const char *key = g_ptr_array_index(keys, i);
        g_autofree char *kpath = ots_config_join_path(path, key);
        const config_setting_t *x = ots_settings_lookup(a, key, NULL);
        const config_setting_t *y = ots_settings_lookup(b, key, NULL);
        if (x == NULL || y == NULL || !config_setting_is_group(x) || !config_setting_is_group(y)) {
            if (x == NULL || y == NULL || !value_equal(x, y, NULL, depth + 1))
                report(d, kpath);
            continue;
        }
        diff_group(d, ots_settings_node(x), ots_settings_node(y), children, kpath, depth + 1);
    }
}

/* One key of two groups; @spec: (nullable): its entry in the table. */
static void
diff_member(Diff *d, const OtsSettings *a, const OtsSettings *b, const char *key,
            const OtsSettingSpec *spec, const char *path, guint depth)
{
    const config_setting_t *x = ots_settings_lookup(a, key, NULL);
    const config_setting_t *y = ots_settings_lookup(b, key, NULL);
    if (x == NULL && y == NULL)
        return;
    if (x == NULL || y == NULL) {
        report(d, path);
        return;
    }
    if (config_setting_is_group(x) && config_setting_is_group(y)) {
        if (spec != NULL && spec->type == OTS_SETTING_MAP)
            diff_map(d, ots_settings_node(x), ots_settings_node(y), spec->children, path,
                     depth + 1);
        else
            diff_group(d, ots_settings_node(x), ots_settings_node(y),
                       spec != NULL ? spec->children : NULL, path, depth + 1);
        return;
    }
    /* A scalar, an array or a list (of groups): one path for all of it. */
    if (!value_equal(x, y, spec != NULL ? spec->children : NULL, depth + 1))
        report(d, path);
}

/* @spec: (nullable): the group's table; NULL or empty: a free-form group,
 * walked by the keys either side has. */
static void
diff_group(Diff *d, const OtsSettings *a, const OtsSettings *b, const OtsSettingSpec *spec,
           const char *path, guint depth)
{
    if (depth > OTS_CONFIG_MAX_DEPTH) {
        report(d, *path ? path : "(root)");
        return;
    }
    if (spec != NULL && spec->name != NULL) {
        for (const OtsSettingSpec *sp = spec; sp->name != NULL && sp->type != OTS_SETTING_END;
             sp++) {
            g_autofree char *p = ots_config_join_path(path, sp->name);
            diff_member(d, a, b, sp->name, sp, p, depth);
        }
        return;
    }
    g_autoptr(GPtrArray) keys = ots_settings_get_keys(a);
    g_autoptr(GPtrArray) more = ots_settings_get_keys(b);
    g_ptr_array_extend(keys, more, NULL, NULL);
    for (guint i = 0; i < keys->len; i++) {
        const char *key = g_ptr_array_index(keys, i);
        gboolean seen = FALSE;
        for (guint k = 0; k < i && !seen; k++)
            seen = strcmp(g_ptr_array_index(keys, k), key) == 0;
        if (seen)
            continue;
        g_autofree char *p = ots_config_join_path(path, key);
        diff_member(d, a, b, key, NULL, p, depth);
    }
}

/**
 * ots_settings_diff:
 * @a: (nullable): a settings group (NULL: an empty one)
 * @b: (nullable): the group to compare it with
 * @spec: (nullable): the table both follow (ots_config_core_schema() for
 *   the roots, a plugin's table for its group); NULL: a free-form walk over
 *   the keys either side has
 * @path: (nullable): the groups' own key path, prefixed to every result
 *
 * Compares the values as lookups see them, defaults included: a key one
 * file sets to its default and the other leaves out is no difference.
 * Groups are walked key by key; a scalar, an array and a list of groups is
 * one path, however many of its elements differ; each child of a map is
 * walked on its own ("dissectors.modbus.tcp_ports"), and one only a side
 * has is named once ("transports.proxy"). Never any value.
 *
 * Returns: (transfer full) (element-type utf8): the dotted paths that
 * differ, once each, in table order; empty when none does.
 */
GPtrArray *
ots_settings_diff(const OtsSettings *a, const OtsSettings *b, const OtsSettingSpec *spec,
                  const char *path)
{
    Diff d = {.paths = g_ptr_array_new_with_free_func(g_free)};
    diff_group(&d, a, b, spec, path ? path : "", 0);
    return d.paths;
}
