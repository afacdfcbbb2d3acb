/* SPDX-License-Identifier: MIT */
/*
 * The "file" registry source: one JSON document, or a directory of them
 * whose services are merged, watched with inotify so edits, atomic renames
 * and deletes reach the reconciler within milliseconds.
 */
#ifndef SLUICED_SOURCE_FILE_H
#define SLUICED_SOURCE_FILE_H

#include <limits.h>

#include "lib/registry.h"
#include "loop.h"

struct source_file {
	char path[PATH_MAX];
	char dir[PATH_MAX]; /* the directory watched: path itself, or the file's directory */
	char name[NAME_MAX + 1]; /* the file's name in dir; "" when path is a directory */
	int inotify_fd;
	int debounce_fd; /* timerfd: a burst of events becomes one reload */
	struct loop_watch inotify_watch;
	struct loop_watch debounce_watch;
	struct loop *loop;
	void (*changed)(void *ctx);
	void *ctx;
};

/* Starts watching path; changed(ctx) runs on the loop after the files settle. */
int source_file_open(struct source_file *s, const char *path, struct loop *loop,
		     void (*changed)(void *ctx), void *ctx);
/* Reads and validates the whole source; err names the file, service and field. */
int source_file_read(const struct source_file *s, struct sl_registry *out, char *err,
		     size_t errlen);
void source_file_close(struct source_file *s);

#endif
