/* SPDX-License-Identifier: MIT */
/*
 * For test and bench programs that load an object under a pin root of their
 * own: unpin its maps, destroy it, and remove whatever is left in the pin
 * root (a load that failed half way). Safe to call more than once.
 */
#ifndef SL_TESTS_PIN_ROOT_H
#define SL_TESTS_PIN_ROOT_H

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/libbpf.h>

static inline void remove_pin_root(struct bpf_object *obj, char *pin_root, const char *prog)
{
	struct bpf_map *map;
	struct dirent *de;
	char path[PATH_MAX];
	DIR *d;

	if (obj)
		bpf_object__for_each_map(map, obj)
			if (bpf_map__is_pinned(map))
				bpf_map__unpin(map, NULL);
	if (!pin_root[0])
		return;
	d = opendir(pin_root);
	if (d) {
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			snprintf(path, sizeof(path), "%s/%s", pin_root, de->d_name);
			if (unlink(path))
				fprintf(stderr, "%s: cannot remove %s: %s\n", prog, path,
					strerror(errno));
		}
		closedir(d);
	}
	if (rmdir(pin_root) && errno != ENOENT)
		fprintf(stderr, "%s: cannot remove %s: %s\n", prog, pin_root, strerror(errno));
	pin_root[0] = 0;
}

#endif
