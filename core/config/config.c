/* SPDX-License-Identifier: Apache-2.0 */

/* Loading and validation of otsensor.conf. A load parses the file with
 * libconfig, validates every key against the core schema (the first error in
 * file order wins), then builds the read-only OtsSettings trees of the file,
 * the embedded defaults and the per-element defaults, and links each group of
 * the file to the defaults' group of the same path. */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config-private.h"

/* A config file is text written by a person; refuse anything far larger
 * rather than trying to parse it. */
#define MAX_FILE_SIZE (16 * 1024 * 1024)
/* Longest user value quoted back in a message. */
#define MAX_QUOTED_CHARS 64
/* Longest word ots_config_suggest() compares. */
#define MAX_SUGGEST_LEN 256

struct _OtsConfig {
    char *name;
    char *include_dir;
    config_t file;
    gboolean has_file;
    config_t defaults;
    config_t templates;
    GPtrArray *nodes;
    const OtsSettings *root;
};

typedef struct {
    const char *name;
    OtsConfigCheckFunc check;
    /* "file\nline" -> GArray of gint64: integer literals of that line that
     * libconfig 1.5 silently truncated to 32 bits (no L suffix). */
    GHashTable *overflows;
} Validator;

G_DEFINE_QUARK(ots - config - error - quark, ots_config_error)

/* ---- messages ---------------------------------------------------------- */

const char *
ots_config_type_name(int libconfig_type)
{
    switch (libconfig_type) {
    case CONFIG_TYPE_GROUP:
        return "a group";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "an integer";
    case CONFIG_TYPE_FLOAT:
        return "a float";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a boolean";
    case CONFIG_TYPE_ARRAY:
        return "an array";
    case CONFIG_TYPE_LIST:
        return "a list";
    default:
        return "a value";
    }
}

static const char *
spec_type_name(OtsSettingType type)
{
    switch (type) {
    case OTS_SETTING_STRING:
        return "a string";
    case OTS_SETTING_INT:
        return "an integer";
    case OTS_SETTING_BOOL:
        return "a boolean";
    case OTS_SETTING_FLOAT:
        return "a number";
    case OTS_SETTING_GROUP:
    case OTS_SETTING_MAP:
        return "a group";
    case OTS_SETTING_LIST:
        return "a list of groups";
    case OTS_SETTING_STRING_ARRAY:
        return "an array of strings";
    case OTS_SETTING_INT_ARRAY:
        return "an array of integers";
    default:
        return "a value";
    }
}

/* libconfig records included files by the name written in @include; give
 * them the directory it opened them from. */
static char *
resolve_file(const config_t *cfg, const char *file)
{
    const char *dir = cfg ? config_get_include_dir(cfg) : NULL;

    if (dir == NULL || *dir == '\0' || strcmp(dir, ".") == 0 || g_path_is_absolute(file))
        return g_strdup(file);
    return g_build_filename(dir, file, NULL);
}

char *
ots_config_setting_location(const config_setting_t *setting, const char *name)
{
    const char *raw = config_setting_source_file(setting);
    g_autofree char *file =
        raw ? resolve_file(setting->config, raw) : g_strdup(name ? name : "<config>");
    unsigned line = config_setting_source_line(setting);

    if (line == 0)
        return g_steal_pointer(&file);
    return g_strdup_printf("%s:%u", file, line);
}

static void set_error_valist(GError **error, OtsConfigError code, const config_setting_t *where,
                             const char *name, const char *path, const char *fmt, va_list ap)
    G_GNUC_PRINTF(6, 0);

static void
set_error_valist(GError **error, OtsConfigError code, const config_setting_t *where,
                 const char *name, const char *path, const char *fmt, va_list ap)
{
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    g_autofree char *loc =
        where ? ots_config_setting_location(where, name) : g_strdup(name ? name : "<config>");

    if (path != NULL && *path != '\0')
        g_set_error(error, OTS_CONFIG_ERROR, code, "%s: %s: %s", loc, path, msg);
    else
        g_set_error(error, OTS_CONFIG_ERROR, code, "%s: %s", loc, msg);
}

void
ots_config_set_error_at(GError **error, OtsConfigError code, const config_setting_t *where,
                        const char *name, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error_valist(error, code, where, name, path, fmt, ap);
    va_end(ap);
}

char *
ots_config_join_path(const char *parent, const char *key)
{
    if (parent == NULL || *parent == '\0')
        return g_strdup(key ? key : "");
    if (key == NULL || *key == '\0')
        return g_strdup(parent);
    return g_strconcat(parent, ".", key, NULL);
}

char *
ots_config_quote(const char *value)
{
    char keep[129];
    gboolean utf8 = g_utf8_validate(value, -1, NULL);
    g_autofree char *cut = NULL;

    /* Control characters and quotes are escaped; UTF-8 text stays readable. */
    for (int i = 0; i < 128; i++)
        keep[i] = (char)(0x80 + i);
    keep[128] = '\0';
    if (utf8 && g_utf8_strlen(value, -1) > MAX_QUOTED_CHARS)
        cut = g_utf8_substring(value, 0, MAX_QUOTED_CHARS);
    else if (!utf8 && strlen(value) > MAX_QUOTED_CHARS)
        cut = g_strndup(value, MAX_QUOTED_CHARS);
    g_autofree char *escaped = g_strescape(cut ? cut : value, utf8 ? keep : NULL);
    return cut ? g_strconcat(escaped, "...", NULL) : g_steal_pointer(&escaped);
}

/* "a.b[2].c" for any setting. */
static char *
setting_path(const config_setting_t *s)
{
    GPtrArray *parts = g_ptr_array_new_with_free_func(g_free);
    GString *out = g_string_new(NULL);

    for (; s != NULL && config_setting_parent(s) != NULL; s = config_setting_parent(s)) {
        if (config_setting_name(s) != NULL)
            g_ptr_array_add(parts, g_strdup(config_setting_name(s)));
        else
            g_ptr_array_add(parts, g_strdup_printf("[%d]", config_setting_index(s)));
    }
    for (guint i = parts->len; i > 0; i--) {
        const char *p = g_ptr_array_index(parts, i - 1);
        if (out->len > 0 && p[0] != '[')
            g_string_append_c(out, '.');
        g_string_append(out, p);
    }
    g_ptr_array_unref(parts);
    return g_string_free(out, FALSE);
}

/* ---- "did you mean" ------------------------------------------------------ */

/* Optimal string alignment distance (Damerau-Levenshtein with adjacent
 * transpositions), ASCII case-insensitive. Both lengths <= MAX_SUGGEST_LEN. */
static guint
osa_distance(const char *a, size_t la, const char *b, size_t lb)
{
    guint rows[3][MAX_SUGGEST_LEN + 1];
    guint *prev2 = rows[0], *prev = rows[1], *cur = rows[2];

    for (size_t j = 0; j <= lb; j++)
        prev[j] = (guint)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (guint)i;
        for (size_t j = 1; j <= lb; j++) {
            char ca = g_ascii_tolower(a[i - 1]), cb = g_ascii_tolower(b[j - 1]);
            guint cost = ca == cb ? 0 : 1;
            guint d = MIN(MIN(prev[j] + 1, cur[j - 1] + 1), prev[j - 1] + cost);
            if (i > 1 && j > 1 && ca == g_ascii_tolower(b[j - 2]) &&
                g_ascii_tolower(a[i - 2]) == cb)
                d = MIN(d, prev2[j - 2] + 1);
            cur[j] = d;
        }
        guint *tmp = prev2;
        prev2 = prev;
        prev = cur;
        cur = tmp;
    }
    return prev[lb];
}

/**
 * ots_config_suggest:
 * @word: the unknown word
 * @candidates: (array length=n): the known words (NULL entries are skipped)
 * @n: the number of candidates
 *
 * The allowed distance grows with the word: 1 edit up to 3 characters,
 * 2 up to 7, 3 beyond. Case differences cost nothing. When no candidate is
 * that close, a word of 3 characters or more that starts a candidate
 * (an abbreviation: "promisc") suggests it.
 *
 * Returns: (transfer none) (nullable): the closest candidate, the first one
 * on a tie, or NULL if none is close enough.
 */
const char *
ots_config_suggest(const char *word, const char *const *candidates, guint n)
{
    const char *best = NULL;

    if (word == NULL || candidates == NULL)
        return NULL;
    size_t lw = strlen(word);
    if (lw == 0 || lw > MAX_SUGGEST_LEN)
        return NULL;
    guint threshold = lw <= 3 ? 1 : lw <= 7 ? 2 : 3;
    guint best_d = threshold + 1;

    for (guint i = 0; i < n; i++) {
        const char *c = candidates[i];
        if (c == NULL)
            continue;
        size_t lc = strlen(c);
        if (lc == 0 || lc > MAX_SUGGEST_LEN || (lc > lw ? lc - lw : lw - lc) >= best_d)
            continue;
        guint d = osa_distance(word, lw, c, lc);
        if (d < best_d) {
            best_d = d;
            best = c;
        }
    }
    if (best != NULL || lw < 3)
        return best;
    for (guint i = 0; i < n; i++)
        if (candidates[i] != NULL && g_ascii_strncasecmp(candidates[i], word, lw) == 0)
            return candidates[i];
    return NULL;
}

/* ---- 32-bit truncation -------------------------------------------------- */

/* libconfig 1.5 stores an integer literal without the L suffix in an int,
 * silently dropping the high bits (4294967301 reads as 5). The parsed tree
 * cannot tell, so scan the text for such literals; a setting is flagged when
 * its line holds one whose truncation equals its value. */
static void
scan_overflows(const char *text, const char *file_key, GHashTable *table)
{
    guint line = 1;
    const char *p = text;

    while (*p != '\0') {
        char c = *p;
        if (c == '\n') {
            line++;
            p++;
        } else if (c == '#' || (c == '/' && p[1] == '/')) {
            while (*p != '\0' && *p != '\n')
                p++;
        } else if (c == '/' && p[1] == '*') {
            p += 2;
            while (*p != '\0' && !(p[0] == '*' && p[1] == '/')) {
                if (*p == '\n')
                    line++;
                p++;
            }
            if (*p != '\0')
                p += 2;
        } else if (c == '"') {
            p++;
            while (*p != '\0' && *p != '"') {
                if (*p == '\\' && p[1] != '\0')
                    p++;
                if (*p == '\n')
                    line++;
                p++;
            }
            if (*p != '\0')
                p++;
        } else if (g_ascii_isalpha(c) || c == '*' || c == '_') {
            while (g_ascii_isalnum(*p) || *p == '_' || *p == '-' || *p == '*')
                p++;
        } else if (g_ascii_isdigit(c) || ((c == '-' || c == '+') && g_ascii_isdigit(p[1]))) {
            const char *start = p;
            gboolean negative = c == '-';
            gboolean hex = FALSE;
            gint64 value;

            if (c == '-' || c == '+')
                p++;
            if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && g_ascii_isxdigit(p[2])) {
                hex = TRUE;
                p += 2;
                while (g_ascii_isxdigit(*p))
                    p++;
            } else {
                while (g_ascii_isdigit(*p))
                    p++;
            }
            if (!hex && (*p == '.' || *p == 'e' || *p == 'E')) {
                /* a float */
                while (g_ascii_isdigit(*p) || *p == '.' || *p == 'e' || *p == 'E' ||
                       ((*p == '-' || *p == '+') && (p[-1] == 'e' || p[-1] == 'E')))
                    p++;
                continue;
            }
            if (*p == 'L') {
                while (*p == 'L')
                    p++;
                continue;
            }
            if (hex) {
                guint64 u = g_ascii_strtoull(start + (start[0] == '-' || start[0] == '+' ? 3 : 2),
                                             NULL, 16);
                if (u <= G_MAXINT32)
                    continue;
                value = negative ? -(gint64)u : (gint64)u;
            } else {
                value = g_ascii_strtoll(start, NULL, 10);
                if (value >= G_MININT32 && value <= G_MAXINT32)
                    continue;
            }
            char *key = g_strdup_printf("%s\n%u", file_key, line);
            GArray *values = g_hash_table_lookup(table, key);
            if (values == NULL) {
                values = g_array_new(FALSE, FALSE, sizeof(gint64));
                g_hash_table_insert(table, key, values);
            } else {
                g_free(key);
            }
            g_array_append_val(values, value);
        } else {
            p++;
        }
    }
}

/* The literal written for @s if libconfig truncated it, else FALSE. */
static gboolean
find_overflow(GHashTable *table, const config_setting_t *s, gint64 *literal)
{
    if (table == NULL || config_setting_type(s) != CONFIG_TYPE_INT)
        return FALSE;
    const char *file = config_setting_source_file(s);
    g_autofree char *key =
        g_strdup_printf("%s\n%u", file ? file : "", config_setting_source_line(s));
    GArray *values = g_hash_table_lookup(table, key);
    int v = config_setting_get_int(s);

    for (guint i = 0; values != NULL && i < values->len; i++) {
        gint64 lit = g_array_index(values, gint64, i);
        if ((gint32)(guint32)(guint64)lit == v) {
            *literal = lit;
            return TRUE;
        }
    }
    return FALSE;
}

static gboolean
check_overflow(const Validator *v, const config_setting_t *s, const char *path, GError **error)
{
    gint64 literal;

    if (!find_overflow(v->overflows, s, &literal))
        return TRUE;
    ots_config_set_error_at(error, OTS_CONFIG_ERROR_RANGE, s, v->name, path,
                            "%" G_GINT64_FORMAT " does not fit in 32 bits (write %" G_GINT64_FORMAT
                            "L for a 64-bit integer)",
                            literal, literal);
    return FALSE;
}

/* Every integer of the tree, including the groups no schema covers yet. */
static gboolean
check_all_overflows(const Validator *v, const config_setting_t *s, guint depth, GError **error)
{
    if (config_setting_type(s) == CONFIG_TYPE_INT) {
        g_autofree char *path = setting_path(s);
        return check_overflow(v, s, path, error);
    }
    if (!config_setting_is_aggregate(s) || depth > OTS_CONFIG_MAX_DEPTH)
        return TRUE;
    int n = config_setting_length(s);
    for (int i = 0; i < n; i++)
        if (!check_all_overflows(v, config_setting_get_elem(s, (unsigned)i), depth + 1, error))
            return FALSE;
    return TRUE;
}

/* ---- validation ---------------------------------------------------------- */

static gboolean validate_group(const Validator *v, const config_setting_t *group,
                               const OtsSettingSpec *table, const char *path,
                               const config_setting_t *defaults, GError **error);

static gboolean
type_error(const Validator *v, const config_setting_t *s, const char *path, const char *expected,
           GError **error)
{
    ots_config_set_error_at(error, OTS_CONFIG_ERROR_TYPE, s, v->name, path, "expected %s, got %s",
                            expected, ots_config_type_name(config_setting_type(s)));
    return FALSE;
}

static gboolean
check_int(const Validator *v, const config_setting_t *s, const OtsSettingSpec *spec,
          const char *path, GError **error)
{
    int type = config_setting_type(s);

    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
        return type_error(v, s, path, "an integer", error);
    if (!check_overflow(v, s, path, error))
        return FALSE;
    gint64 value = config_setting_get_int64(s);
    if (spec->max > spec->min && (value < spec->min || value > spec->max)) {
        ots_config_set_error_at(error, OTS_CONFIG_ERROR_RANGE, s, v->name, path,
                                "%" G_GINT64_FORMAT " is out of range (%" G_GINT64_FORMAT
                                "..%" G_GINT64_FORMAT ")",
                                value, spec->min, spec->max);
        return FALSE;
    }
    return TRUE;
}

static gboolean
check_float(const Validator *v, const config_setting_t *s, const OtsSettingSpec *spec,
            const char *path, GError **error)
{
    int type = config_setting_type(s);
    double value;

    if (type == CONFIG_TYPE_FLOAT) {
        value = config_setting_get_float(s);
    } else if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) {
        if (!check_overflow(v, s, path, error))
            return FALSE;
        value = (double)config_setting_get_int64(s);
    } else {
        return type_error(v, s, path, "a number", error);
    }
    if (spec->max > spec->min && (!(value >= (double)spec->min) || !(value <= (double)spec->max))) {
        ots_config_set_error_at(error, OTS_CONFIG_ERROR_RANGE, s, v->name, path,
                                "%g is out of range (%" G_GINT64_FORMAT "..%" G_GINT64_FORMAT ")",
                                value, spec->min, spec->max);
        return FALSE;
    }
    return TRUE;
}

static gboolean
check_string(const Validator *v, const config_setting_t *s, const OtsSettingSpec *spec,
             const char *path, GError **error)
{
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return type_error(v, s, path, "a string", error);

    const char *value = config_setting_get_string(s);
    if (!g_utf8_validate(value, -1, NULL)) {
        ots_config_set_error_at(error, OTS_CONFIG_ERROR_VALUE, s, v->name, path,
                                "the string is not valid UTF-8");
        return FALSE;
    }
    if (spec->max > spec->min) {
        glong len = g_utf8_strlen(value, -1);
        if (len == 0 && spec->min > 0) {
            ots_config_set_error_at(error, OTS_CONFIG_ERROR_RANGE, s, v->name, path,
                                    "must not be empty");
            return FALSE;
        }
        if (len < spec->min || len > spec->max) {
            ots_config_set_error_at(error, OTS_CONFIG_ERROR_RANGE, s, v->name, path,
                                    "length %ld is out of range (%" G_GINT64_FORMAT
                                    "..%" G_GINT64_FORMAT " characters)",
                                    len, spec->min, spec->max);
            return FALSE;
        }
    }
    if (spec->choices != NULL) {
        guint n = 0;
        for (; spec->choices[n] != NULL; n++)
            if (strcmp(spec->choices[n], value) == 0)
                return TRUE;
        g_autofree char *quoted = ots_config_quote(value);
        g_autofree char *allowed = g_strjoinv(", ", (char **)spec->choices);
        const char *hint = ots_config_suggest(value, spec->choices, n);
        g_autofree char *did = hint ? g_strdup_printf(" (did you mean '%s'?)", hint) : NULL;
        ots_config_set_error_at(error, OTS_CONFIG_ERROR_VALUE, s, v->name, path,
                                "'%s' is not one of: %s%s", quoted, allowed, did ? did : "");
        return FALSE;
    }
    return TRUE;
}

static gboolean
check_scalar_array(const Validator *v, const config_setting_t *s, const OtsSettingSpec *spec,
                   const char *path, GError **error)
{
    if (!config_setting_is_array(s) && !config_setting_is_list(s))
        return type_error(v, s, path, spec_type_name(spec->type), error);

    int n = config_setting_length(s);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        g_autofree char *epath = g_strdup_printf("%s[%d]", path, i);
        gboolean ok = spec->type == OTS_SETTING_INT_ARRAY ? check_int(v, e, spec, epath, error)
                                                          : check_string(v, e, spec, epath, error);
        if (!ok)
            return FALSE;
    }
    return TRUE;
}

static gboolean
validate_value(const Validator *v, const config_setting_t *s, const OtsSettingSpec *spec,
               const char *path, const config_setting_t *defaults, GError **error)
{
    gboolean ok = TRUE;

    switch (spec->type) {
    case OTS_SETTING_STRING:
        ok = check_string(v, s, spec, path, error);
        break;
    case OTS_SETTING_INT:
        ok = check_int(v, s, spec, path, error);
        break;
    case OTS_SETTING_BOOL:
        if (config_setting_type(s) != CONFIG_TYPE_BOOL)
            ok = type_error(v, s, path, "a boolean", error);
        break;
    case OTS_SETTING_FLOAT:
        ok = check_float(v, s, spec, path, error);
        break;
    case OTS_SETTING_GROUP:
        if (!config_setting_is_group(s))
            ok = type_error(v, s, path, "a group", error);
        else if (spec->children != NULL)
            ok = validate_group(v, s, spec->children, path,
                                (defaults && config_setting_is_group(defaults)) ? defaults : NULL,
                                error);
        break;
    case OTS_SETTING_LIST: {
        /* "[]" is how many people write an empty list. */
        if (!config_setting_is_list(s) &&
            !(config_setting_is_array(s) && config_setting_length(s) == 0)) {
            ok = type_error(v, s, path, "a list of groups", error);
            break;
        }
        int n = config_setting_length(s);
        for (int i = 0; i < n && ok; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            g_autofree char *epath = g_strdup_printf("%s[%d]", path, i);
            if (!config_setting_is_group(e))
                ok = type_error(v, e, epath, "a group", error);
            else if (spec->children != NULL)
                ok = validate_group(v, e, spec->children, epath, NULL, error);
        }
        break;
    }
    case OTS_SETTING_STRING_ARRAY:
    case OTS_SETTING_INT_ARRAY:
        ok = check_scalar_array(v, s, spec, path, error);
        break;
    case OTS_SETTING_MAP: {
        if (!config_setting_is_group(s)) {
            ok = type_error(v, s, path, "a group", error);
            break;
        }
        int n = config_setting_length(s);
        for (int i = 0; i < n && ok; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            g_autofree char *epath = ots_config_join_path(path, config_setting_name(e));
            if (!config_setting_is_group(e))
                ok = type_error(v, e, epath, "a group", error);
            else if (spec->children != NULL)
                ok = validate_group(v, e, spec->children, epath, NULL, error);
        }
        break;
    }
    default:
        break;
    }
    if (ok && v->check != NULL)
        ok = v->check(s, spec, path, v->name, error);
    return ok;
}

static const OtsSettingSpec *
find_spec(const OtsSettingSpec *table, const char *name)
{
    for (; table->name != NULL && table->type != OTS_SETTING_END; table++)
        if (strcmp(table->name, name) == 0)
            return table;
    return NULL;
}

static gboolean
unknown_key(const Validator *v, const config_setting_t *s, const OtsSettingSpec *table,
            const char *path, GError **error)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new();

    for (; table->name != NULL && table->type != OTS_SETTING_END; table++)
        g_ptr_array_add(names, (gpointer)table->name);
    const char *hint =
        ots_config_suggest(config_setting_name(s), (const char *const *)names->pdata, names->len);
    if (hint != NULL) {
        ots_config_set_error_at(error, OTS_CONFIG_ERROR_UNKNOWN_KEY, s, v->name, path,
                                "unknown setting (did you mean '%s'?)", hint);
    } else if (names->len == 0) {
        ots_config_set_error_at(error, OTS_CONFIG_ERROR_UNKNOWN_KEY, s, v->name, path,
                                "unknown setting (this group takes none)");
    } else {
        g_ptr_array_add(names, NULL);
        g_autofree char *known = g_strjoinv(", ", (char **)names->pdata);
        ots_config_set_error_at(error, OTS_CONFIG_ERROR_UNKNOWN_KEY, s, v->name, path,
                                "unknown setting (expected one of: %s)", known);
    }
    return FALSE;
}

static gboolean
missing_key(const char *name, const config_setting_t *group, const OtsSettingSpec *spec,
            const char *path, GError **error)
{
    g_autofree char *mpath = ots_config_join_path(path, spec->name);
    g_autoptr(GPtrArray) needed = g_ptr_array_new();

    if (spec->type == OTS_SETTING_GROUP && spec->children != NULL)
        for (const OtsSettingSpec *c = spec->children;
             c->name != NULL && c->type != OTS_SETTING_END; c++)
            if (c->required)
                g_ptr_array_add(needed, (gpointer)c->name);
    if (needed->len > 0) {
        g_ptr_array_add(needed, NULL);
        g_autofree char *list = g_strjoinv(", ", (char **)needed->pdata);
        ots_config_set_error_at(error, OTS_CONFIG_ERROR_MISSING, group, name, mpath,
                                "required group is missing (it must set: %s)", list);
    } else {
        ots_config_set_error_at(error, OTS_CONFIG_ERROR_MISSING, group, name, mpath,
                                "required setting is missing");
    }
    return FALSE;
}

/* Members in file order, then the required ones that are absent (reported at
 * the group's line, after any error inside the group). @defaults is the
 * defaults' group of the same path, or NULL: a required key it sets may be
 * left out of the file. */
static gboolean
validate_group(const Validator *v, const config_setting_t *group, const OtsSettingSpec *table,
               const char *path, const config_setting_t *defaults, GError **error)
{
    int n = config_setting_length(group);

    for (int i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(group, (unsigned)i);
        const char *mname = config_setting_name(m);
        g_autofree char *mpath = ots_config_join_path(path, mname);
        const OtsSettingSpec *spec = mname ? find_spec(table, mname) : NULL;

        if (spec == NULL)
            return unknown_key(v, m, table, mpath, error);
        const config_setting_t *dm = defaults ? config_setting_get_member(defaults, mname) : NULL;
        if (!validate_value(v, m, spec, mpath, dm, error))
            return FALSE;
    }
    for (const OtsSettingSpec *spec = table; spec->name != NULL && spec->type != OTS_SETTING_END;
         spec++)
        if (spec->required && config_setting_get_member(group, spec->name) == NULL &&
            (defaults == NULL || config_setting_get_member(defaults, spec->name) == NULL))
            return missing_key(v->name, group, spec, path, error);
    return TRUE;
}

/**
 * ots_settings_validate:
 * @s: (nullable): the group to check (NULL: the group is absent)
 * @spec: its spec table, ended by an entry of type %OTS_SETTING_END
 * @path: (nullable): the group's key path ("transports.proxy"), for messages
 * @error: return location for an #OTS_CONFIG_ERROR
 *
 * Checks the keys the group itself sets, with the same rules and messages as
 * the core schema. A required key must be set by the group or by its
 * defaults (a plugin's group has none). An absent group passes unless @spec
 * has required keys.
 *
 * Returns: %TRUE if the group is valid.
 */
gboolean
ots_settings_validate(const OtsSettings *s, const OtsSettingSpec *spec, const char *path,
                      GError **error)
{
    g_return_val_if_fail(spec != NULL, FALSE);
    g_return_val_if_fail(error == NULL || *error == NULL, FALSE);

    if (s == NULL) {
        for (; spec->name != NULL && spec->type != OTS_SETTING_END; spec++) {
            if (!spec->required)
                continue;
            g_autofree char *mpath = ots_config_join_path(path, spec->name);
            g_set_error(error, OTS_CONFIG_ERROR, OTS_CONFIG_ERROR_MISSING,
                        "%s: required setting is missing", mpath);
            return FALSE;
        }
        return TRUE;
    }
    Validator v = {.name = s->name};
    return validate_group(&v, s->setting, spec, path ? path : "",
                          s->fallback ? s->fallback->setting : NULL, error);
}

/**
 * ots_settings_set_error:
 * @s: (nullable): the group holding the faulty setting
 * @key: (nullable): the setting within @s (a dotted path), or NULL for @s itself
 * @path: (nullable): the key path of @s ("dissectors"); the message names
 *   "@path.@key" (a @path that already ends with @key is used as is)
 * @error: return location for an #OTS_CONFIG_ERROR
 * @code: the error code
 * @fmt: printf format of what is wrong
 * @...: its arguments
 *
 * Sets "file:line: path: message" for a check done outside the schema. When
 * @key is not set, the location is that of @s.
 */
void
ots_settings_set_error(const OtsSettings *s, const char *key, const char *path, GError **error,
                       OtsConfigError code, const char *fmt, ...)
{
    g_autofree char *full = NULL;
    const OtsSettings *owner = s;
    const config_setting_t *where = NULL;
    va_list ap;

    if (key == NULL || *key == '\0') {
        full = g_strdup(path ? path : "");
    } else if (path == NULL || *path == '\0') {
        full = g_strdup(key);
    } else {
        size_t lp = strlen(path), lk = strlen(key);
        gboolean has_key = strcmp(path, key) == 0 || (lp > lk && path[lp - lk - 1] == '.' &&
                                                      strcmp(path + lp - lk, key) == 0);
        full = has_key ? g_strdup(path) : ots_config_join_path(path, key);
    }
    if (s != NULL) {
        where = key ? ots_settings_lookup(s, key, &owner) : NULL;
        if (where == NULL) {
            where = s->setting;
            owner = s;
        }
    }
    va_start(ap, fmt);
    set_error_valist(error, code, where, owner ? owner->name : NULL, full, fmt, ap);
    va_end(ap);
}

/* ---- loading ------------------------------------------------------------- */

static void
parse_builtin(config_t *cfg, const char *text)
{
    config_init(cfg);
    /* The embedded texts are part of the program: a failure is a bug the
     * unit tests catch, not a user error. */
    if (!config_read_string(cfg, text))
        g_error("embedded configuration does not parse: line %d: %s", config_error_line(cfg),
                config_error_text(cfg));
}

static OtsConfig *
config_new(const char *name)
{
    OtsConfig *c = g_new0(OtsConfig, 1);
    c->name = g_strdup(name);
    c->nodes = g_ptr_array_new_with_free_func(g_free);
    parse_builtin(&c->defaults, ots_config_default_text);
    parse_builtin(&c->templates, ots_config_template_text);
    return c;
}

/**
 * ots_config_free:
 * @c: (nullable) (transfer full): a config
 */
void
ots_config_free(OtsConfig *c)
{
    if (c == NULL)
        return;
    if (c->has_file)
        config_destroy(&c->file);
    config_destroy(&c->defaults);
    config_destroy(&c->templates);
    g_ptr_array_unref(c->nodes);
    g_free(c->include_dir);
    g_free(c->name);
    g_free(c);
}

static config_setting_t *
member_group(const config_setting_t *s, const char *name)
{
    config_setting_t *m = (s && name) ? config_setting_get_member(s, name) : NULL;
    return (m && config_setting_is_group(m)) ? m : NULL;
}

/* Gives @s the fallback @fb (both groups of the same path), and recurses into
 * the nested groups of @table. The elements of a list fall back to the first
 * element of the template list @tpl holds at that path. Maps are not linked:
 * their content replaces the defaults'. */
static void
link_fallbacks(const config_setting_t *s, const config_setting_t *fb, const config_setting_t *tpl,
               const OtsSettingSpec *table)
{
    OtsSettings *node = (OtsSettings *)ots_settings_node(s);
    if (node == NULL)
        return;
    node->fallback = ots_settings_node(fb);

    for (; table->name != NULL && table->type != OTS_SETTING_END; table++) {
        if (table->children == NULL)
            continue;
        if (table->type == OTS_SETTING_GROUP) {
            const config_setting_t *m = member_group(s, table->name);
            if (m != NULL)
                link_fallbacks(m, member_group(fb, table->name), member_group(tpl, table->name),
                               table->children);
        } else if (table->type == OTS_SETTING_LIST) {
            const config_setting_t *list = config_setting_get_member(s, table->name);
            const config_setting_t *tlist =
                tpl ? config_setting_get_member(tpl, table->name) : NULL;
            const config_setting_t *t0 = NULL;
            if (list == NULL || !config_setting_is_list(list))
                continue;
            if (tlist != NULL && config_setting_is_list(tlist) &&
                config_setting_length(tlist) > 0 &&
                config_setting_is_group(config_setting_get_elem(tlist, 0)))
                t0 = config_setting_get_elem(tlist, 0);
            int n = config_setting_length(list);
            for (int i = 0; i < n; i++)
                link_fallbacks(config_setting_get_elem(list, (unsigned)i), t0, t0, table->children);
        }
    }
}

static void
build_trees(OtsConfig *c)
{
    const OtsSettingSpec *schema = ots_config_core_schema();
    config_setting_t *droot = config_root_setting(&c->defaults);
    config_setting_t *troot = config_root_setting(&c->templates);

    ots_settings_tree_build(troot, OTS_CONFIG_DEFAULTS_NAME, c->nodes);
    ots_settings_tree_build(droot, OTS_CONFIG_DEFAULTS_NAME, c->nodes);
    link_fallbacks(droot, NULL, troot, schema);
    if (c->has_file) {
        config_setting_t *froot = config_root_setting(&c->file);
        ots_settings_tree_build(froot, c->name, c->nodes);
        link_fallbacks(froot, droot, troot, schema);
        c->root = ots_settings_node(froot);
    } else {
        c->root = ots_settings_node(droot);
    }
}

static const config_setting_t *
too_deep(const config_setting_t *s, guint depth)
{
    if (depth > OTS_CONFIG_MAX_DEPTH)
        return s;
    if (!config_setting_is_group(s) && !config_setting_is_list(s))
        return NULL;
    int n = config_setting_length(s);
    for (int i = 0; i < n; i++) {
        const config_setting_t *r = too_deep(config_setting_get_elem(s, (unsigned)i), depth + 1);
        if (r != NULL)
            return r;
    }
    return NULL;
}

/* Each included file once (the main text, parsed from memory, has no name). */
static void
collect_files(const config_setting_t *s, GHashTable *files, guint depth)
{
    if (config_setting_source_file(s) != NULL)
        g_hash_table_add(files, (gpointer)config_setting_source_file(s));
    if (depth > OTS_CONFIG_MAX_DEPTH || (!config_setting_is_group(s) && !config_setting_is_list(s)))
        return;
    int n = config_setting_length(s);
    for (int i = 0; i < n; i++)
        collect_files(config_setting_get_elem(s, (unsigned)i), files, depth + 1);
}

static gboolean
read_text(const char *path, char **text, size_t *len, GError **error)
{
    struct stat st;
    FILE *f = fopen(path, "rb");

    if (f == NULL) {
        int e = errno;
        g_set_error(error, OTS_CONFIG_ERROR, OTS_CONFIG_ERROR_IO, "%s: cannot open: %s", path,
                    g_strerror(e));
        return FALSE;
    }
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        g_set_error(error, OTS_CONFIG_ERROR, OTS_CONFIG_ERROR_IO, "%s: is a directory", path);
        return FALSE;
    }
    GString *buf = g_string_new(NULL);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (buf->len + n > MAX_FILE_SIZE) {
            fclose(f);
            g_string_free(buf, TRUE);
            g_set_error(error, OTS_CONFIG_ERROR, OTS_CONFIG_ERROR_IO,
                        "%s: file is larger than %d MiB", path, MAX_FILE_SIZE / (1024 * 1024));
            return FALSE;
        }
        g_string_append_len(buf, chunk, (gssize)n);
    }
    if (ferror(f)) {
        int e = errno;
        fclose(f);
        g_string_free(buf, TRUE);
        g_set_error(error, OTS_CONFIG_ERROR, OTS_CONFIG_ERROR_IO, "%s: cannot read: %s", path,
                    g_strerror(e));
        return FALSE;
    }
    fclose(f);
    *len = buf->len;
    *text = g_string_free(buf, FALSE);
    return TRUE;
}

static gboolean
check_transport(const OtsConfig *c, GError **error)
{
    const char *name = NULL;
    const OtsSettings *transports = ots_settings_get_group(c->root, "transports");

    if (!ots_settings_get_string(c->root, "output.transport", &name) ||
        ots_settings_get_group(transports, name) != NULL)
        return TRUE;

    g_autoptr(GPtrArray) keys = ots_settings_get_keys(transports);
    g_autofree char *quoted = ots_config_quote(name);
    const config_setting_t *set = config_lookup(&c->file, "output.transport");
    if (set != NULL) {
        const char *hint = ots_config_suggest(name, (const char *const *)keys->pdata, keys->len);
        g_autofree char *did = hint ? g_strdup_printf(" (did you mean '%s'?)", hint) : NULL;
        ots_config_set_error_at(error, OTS_CONFIG_ERROR_VALUE, set, c->name, "output.transport",
                                "transport '%s' has no group in transports%s", quoted,
                                did ? did : "");
    } else {
        ots_config_set_error_at(
            error, OTS_CONFIG_ERROR_VALUE, transports ? transports->setting : NULL, c->name,
            "transports", "no group for the active transport '%s' (see output.transport)", quoted);
    }
    return FALSE;
}

static OtsConfig *
load_text(const char *text, size_t len, const char *name, const char *include_dir, GError **error)
{
    g_autoptr(OtsConfig) c = config_new(name);
    const char *nul = memchr(text, '\0', len);

    if (nul != NULL) {
        guint line = 1;
        for (const char *p = text; p < nul; p++)
            line += *p == '\n';
        g_set_error(error, OTS_CONFIG_ERROR, OTS_CONFIG_ERROR_SYNTAX, "%s:%u: NUL byte in the text",
                    name, line);
        return NULL;
    }

    config_init(&c->file);
    c->has_file = TRUE;
    if (include_dir != NULL) {
        c->include_dir = g_strdup(include_dir);
        config_set_include_dir(&c->file, c->include_dir);
    }
    if (!config_read_string(&c->file, text)) {
        const char *efile = config_error_file(&c->file);
        g_autofree char *file = efile ? resolve_file(&c->file, efile) : g_strdup(name);
        int line = config_error_line(&c->file);
        const char *what = config_error_text(&c->file) ? config_error_text(&c->file) : "error";
        if (line > 0)
            g_set_error(error, OTS_CONFIG_ERROR, OTS_CONFIG_ERROR_SYNTAX, "%s:%d: %s", file, line,
                        what);
        else
            g_set_error(error, OTS_CONFIG_ERROR, OTS_CONFIG_ERROR_SYNTAX, "%s: %s", file, what);
        return NULL;
    }

    config_setting_t *root = config_root_setting(&c->file);
    const config_setting_t *deep = too_deep(root, 0);
    if (deep != NULL) {
        g_autofree char *path = setting_path(deep);
        ots_config_set_error_at(error, OTS_CONFIG_ERROR_VALUE, deep, name, path,
                                "nested more than %d levels deep", OTS_CONFIG_MAX_DEPTH);
        return NULL;
    }

    g_autoptr(GHashTable) overflows =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_array_unref);
    scan_overflows(text, "", overflows);
    g_autoptr(GHashTable) files = g_hash_table_new(g_str_hash, g_str_equal);
    collect_files(root, files, 0);
    GHashTableIter it;
    gpointer file;
    g_hash_table_iter_init(&it, files);
    while (g_hash_table_iter_next(&it, &file, NULL)) {
        g_autofree char *path = resolve_file(&c->file, file);
        g_autofree char *inc = NULL;
        size_t inc_len = 0;
        /* Unreadable now: libconfig read it a moment ago; nothing to add. */
        if (read_text(path, &inc, &inc_len, NULL) && memchr(inc, '\0', inc_len) == NULL)
            scan_overflows(inc, file, overflows);
    }

    Validator v = {.name = name, .check = ots_config_core_check, .overflows = overflows};
    if (!validate_group(&v, root, ots_config_core_schema(), "", config_root_setting(&c->defaults),
                        error))
        return NULL;
    if (!check_all_overflows(&v, root, 0, error))
        return NULL;

    build_trees(c);
    if (!check_transport(c, error))
        return NULL;
    return g_steal_pointer(&c);
}

/**
 * ots_config_load_string:
 * @text: configuration text (libconfig syntax)
 * @name: (nullable): the name used in messages (default "<string>")
 * @error: return location for an #OTS_CONFIG_ERROR
 *
 * As ots_config_load_file(); an @include is looked up from the current
 * directory.
 *
 * Returns: (transfer full) (nullable): the config, or NULL with @error set.
 */
OtsConfig *
ots_config_load_string(const char *text, const char *name, GError **error)
{
    g_return_val_if_fail(text != NULL, NULL);
    g_return_val_if_fail(error == NULL || *error == NULL, NULL);

    return load_text(text, strlen(text), name ? name : "<string>", NULL, error);
}

/**
 * ots_config_load_file:
 * @path: the configuration file
 * @error: return location for an #OTS_CONFIG_ERROR
 *
 * Parses @path (an @include is looked up in the file's directory) and
 * validates it against the core schema. The first error in file order is
 * reported as "file:line: key.path: what is wrong".
 *
 * Returns: (transfer full) (nullable): the config, or NULL with @error set.
 */
OtsConfig *
ots_config_load_file(const char *path, GError **error)
{
    g_autofree char *text = NULL;
    size_t len = 0;

    g_return_val_if_fail(path != NULL, NULL);
    g_return_val_if_fail(error == NULL || *error == NULL, NULL);

    if (!read_text(path, &text, &len, error))
        return NULL;
    g_autofree char *dir = g_path_get_dirname(path);
    return load_text(text, len, path, dir, error);
}

/**
 * ots_config_load_defaults:
 *
 * Returns: (transfer full): the embedded default configuration alone.
 */
OtsConfig *
ots_config_load_defaults(void)
{
    OtsConfig *c = config_new(OTS_CONFIG_DEFAULTS_NAME);
    build_trees(c);
    return c;
}

/**
 * ots_config_get_name:
 * @c: a config
 *
 * Returns: (transfer none): the file name given at load, or "<defaults>".
 */
const char *
ots_config_get_name(const OtsConfig *c)
{
    g_return_val_if_fail(c != NULL, NULL);
    return c->name;
}

/**
 * ots_config_get_root:
 * @c: a config
 *
 * Returns: (transfer none): the root group, valid as long as @c; usable from
 * any thread.
 */
const OtsSettings *
ots_config_get_root(const OtsConfig *c)
{
    g_return_val_if_fail(c != NULL, NULL);
    return c->root;
}
