/* SPDX-License-Identifier: Apache-2.0 */
/* Forced into abi-host's sources (-include): the released SDK headers, then
 * the ABI minor raised by one, as a future otsensord that added a field in a
 * reserved slot would have it. The loader source is the daemon's own. */
#pragma once
#include <otsensor/plugin.h>

enum { OTS_TEST_RELEASED_ABI_MINOR = OTS_ABI_MINOR };
#undef OTS_ABI_MINOR
#define OTS_ABI_MINOR (OTS_TEST_RELEASED_ABI_MINOR + 1)
