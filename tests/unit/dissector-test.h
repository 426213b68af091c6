/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Assertion helpers shared by the dissector plugins' CUnit tests, on top of
 * the harness (core/dissect/harness.h). Include after <CUnit/CUnit.h>. */

#include <CUnit/CUnit.h>
#include <stdio.h>
#include "core/dissect/harness.h"

/* Event @i has @path equal to the JSON text @json (the harness prints both
 * sides when they differ). */
static inline gboolean
field_is(OtsHarness *h, gint i, const char *path, const char *json)
{
    if (i < 0) {
        fprintf(stderr, "\n  no such event (checking %s)\n", path);
        return FALSE;
    }
    return ots_harness_field_is(h, (guint)i, path, json);
}

static inline gboolean
field_absent(OtsHarness *h, gint i, const char *path)
{
    if (i < 0)
        return FALSE;
    g_autofree gchar *got = ots_harness_field(h, (guint)i, path);
    if (got)
        fprintf(stderr, "\n  %s: expected absent, got %s\n", path, got);
    return got == NULL;
}

#define FIELD(h, i, path, json) CU_ASSERT(field_is((h), (i), (path), (json)))
#define ABSENT(h, i, path) CU_ASSERT(field_absent((h), (i), (path)))

/* Number of anomaly alerts with @code. */
static inline guint
alerts(OtsHarness *h, const char *code)
{
    g_autofree gchar *want = g_strdup_printf("\"%s\"", code);
    guint n = 0;
    for (guint k = 0;; k++) {
        gint i = ots_harness_find(h, "alert", k);
        if (i < 0)
            break;
        g_autofree gchar *c = ots_harness_field(h, (guint)i, "code");
        if (g_strcmp0(c, want) == 0)
            n++;
    }
    return n;
}

/* Every event valid JSON with its envelope, and no anomaly raised. */
static inline void
check_clean(OtsHarness *h)
{
    CU_ASSERT_EQUAL(ots_harness_invalid_events(h), 0);
    CU_ASSERT_EQUAL(ots_harness_count(h, "alert"), 0);
    if (ots_harness_count(h, "alert") > 0)
        fprintf(stderr, "\n  unexpected alert: %s\n",
                ots_harness_event(h, (guint)ots_harness_find(h, "alert", 0)));
}
