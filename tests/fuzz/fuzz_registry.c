// SPDX-License-Identifier: MIT
/* libFuzzer target: any byte string fed to the registry parser must parse or fail cleanly. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lib/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sl_registry reg;
	char err[SL_ERR_MAX];
	int ret;

	ret = sl_registry_parse((const char *)data, size, &reg, err, sizeof(err));
	/* The contract: success fills reg, failure leaves it empty and says why. */
	if (ret == 0)
		sl_registry_free(&reg);
	else if (reg.services || reg.count || !err[0] || !memchr(err, '\0', sizeof(err)))
		__builtin_trap();
	return 0;
}
