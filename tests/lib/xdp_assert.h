/* SPDX-License-Identifier: MIT */
/*
 * Assertions of the BPF_PROG_TEST_RUN tests (cmocka): each prints what it
 * got and what it wanted, naming the case (cur_case) and what was checked,
 * and yields whether they matched, so a case can check everything before
 * it fails.
 */
#ifndef SL_TESTS_XDP_ASSERT_H
#define SL_TESTS_XDP_ASSERT_H

#include <stdbool.h>
#include <linux/bpf.h>

static const char *cur_case = "";

#define ASSERT_EQ(actual, expected, what)                                                    \
	({                                                                                   \
		long long _a = (long long)(actual), _e = (long long)(expected);              \
		bool _ok = _a == _e;                                                         \
		if (!_ok)                                                                    \
			print_message("  %s: %s: actual %lld, expected %lld\n", cur_case, what, \
				      _a, _e);                                               \
		_ok;                                                                         \
	})

static inline const char *verdict_name(int v)
{
	switch (v) {
	case XDP_ABORTED:
		return "XDP_ABORTED";
	case XDP_DROP:
		return "XDP_DROP";
	case XDP_PASS:
		return "XDP_PASS";
	case XDP_TX:
		return "XDP_TX";
	case XDP_REDIRECT:
		return "XDP_REDIRECT";
	default:
		return "?";
	}
}

#define ASSERT_VERDICT(actual, expected, what)                                               \
	({                                                                                   \
		int _a = (actual), _e = (expected);                                          \
		bool _ok = _a == _e;                                                         \
		if (!_ok)                                                                    \
			print_message("  %s: %s: verdict %s (%d), expected %s\n", cur_case,   \
				      what, verdict_name(_a), _a, verdict_name(_e));         \
		_ok;                                                                         \
	})

#endif
