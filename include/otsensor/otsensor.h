/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The whole otsensor plugin SDK. */
#include <otsensor/plugin.h>
#include <otsensor/reader.h>
#include <otsensor/event.h>
#include <otsensor/dissector.h>
#include <otsensor/settings.h>
#include <otsensor/transport.h>
