// SPDX-License-Identifier: MIT
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <jansson.h>

#include "lib/log.h"
#include "source_file.h"

#define DEBOUNCE_MS 2
#define SOURCE_EVENTS (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | \
		       IN_MOVE_SELF)

static int is_json_name(const char *name)
{
	size_t n = strlen(name);

	/* Editors' temporaries (".x.json.swp", "x.json~") never match. */
	return name[0] != '.' && n > 5 && !strcmp(name + n - 5, ".json");
}

/*
 * Whether an event in the watched directory may have changed the source. A
 * Kubernetes ConfigMap volume replaces its files by renaming the "..data"
 * symlink (the file itself is a symlink through it), so for a single file
 * that rename counts too.
 */
static int touches_source(const struct source_file *s, const char *name)
{
	if (!s->name[0])
		return is_json_name(name);
	return !strcmp(name, s->name) || !strcmp(name, "..data");
}

static void arm_debounce(struct source_file *s)
{
	struct itimerspec its = { .it_value.tv_nsec = DEBOUNCE_MS * 1000000L };

	timerfd_settime(s->debounce_fd, 0, &its, NULL);
}

static void on_inotify(struct loop_watch *w, uint32_t events)
{
	struct source_file *s = (struct source_file *)((char *)w -
		offsetof(struct source_file, inotify_watch));
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	int relevant = 0;
	ssize_t n;

	(void)events;
	while ((n = read(s->inotify_fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;

			if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED))
				relevant = 1;
			else if (ev->len && touches_source(s, ev->name))
				relevant = 1;
			p += sizeof(*ev) + ev->len;
		}
	}
	if (relevant)
		arm_debounce(s);
}

static void on_debounce(struct loop_watch *w, uint32_t events)
{
	struct source_file *s = (struct source_file *)((char *)w -
		offsetof(struct source_file, debounce_watch));
	uint64_t expirations;

	(void)events;
	if (read(s->debounce_fd, &expirations, sizeof(expirations)) < 0)
		return;
	s->changed(s->ctx);
}

int source_file_open(struct source_file *s, const char *path, struct loop *loop,
		     void (*changed)(void *ctx), void *ctx)
{
	struct stat st;
	const char *slash;
	int err;

	memset(s, 0, sizeof(*s));
	s->inotify_fd = s->debounce_fd = -1;
	s->loop = loop;
	s->changed = changed;
	s->ctx = ctx;
	snprintf(s->path, sizeof(s->path), "%s", path);
	if (!stat(path, &st) && S_ISDIR(st.st_mode)) {
		snprintf(s->dir, sizeof(s->dir), "%s", path);
	} else {
		/* Watch the directory: an atomic rename replaces the file's inode. */
		slash = strrchr(path, '/');
		if (!slash)
			snprintf(s->dir, sizeof(s->dir), ".");
		else
			snprintf(s->dir, sizeof(s->dir), "%.*s", (int)(slash - path + (slash == path)),
				 path);
		snprintf(s->name, sizeof(s->name), "%s", slash ? slash + 1 : path);
	}
	s->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	s->debounce_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (s->inotify_fd < 0 || s->debounce_fd < 0) {
		err = -errno;
		goto fail;
	}
	if (inotify_add_watch(s->inotify_fd, s->dir, SOURCE_EVENTS) < 0) {
		err = -errno;
		log_err("registry: cannot watch %s: %s", s->dir, strerror(-err));
		goto fail;
	}
	s->inotify_watch = (struct loop_watch){ s->inotify_fd, on_inotify };
	s->debounce_watch = (struct loop_watch){ s->debounce_fd, on_debounce };
	if ((err = loop_add(loop, &s->inotify_watch, EPOLLIN)) ||
	    (err = loop_add(loop, &s->debounce_watch, EPOLLIN)))
		goto fail;
	return 0;
fail:
	source_file_close(s);
	return err;
}

void source_file_close(struct source_file *s)
{
	if (s->inotify_fd >= 0) {
		loop_del(s->loop, &s->inotify_watch);
		close(s->inotify_fd);
	}
	if (s->debounce_fd >= 0) {
		loop_del(s->loop, &s->debounce_watch);
		close(s->debounce_fd);
	}
	s->inotify_fd = s->debounce_fd = -1;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * A directory: every *.json file is checked on its own (errors name the
 * file), then their services are joined into one document, which the parser
 * checks again for what only shows across files (duplicate names and VIPs).
 */
static int read_dir(const struct source_file *s, struct sl_registry *out, char *err, size_t errlen)
{
	json_t *all = json_array();
	char **names = NULL, path[PATH_MAX + NAME_MAX + 2], *text = NULL;
	size_t count = 0, cap = 0;
	json_t *doc;
	struct dirent *de;
	int ret = 0;
	DIR *d;

	d = opendir(s->dir);
	if (!d) {
		ret = -errno;
		snprintf(err, errlen, "cannot open %s: %s", s->dir, strerror(errno));
		goto out;
	}
	while ((de = readdir(d))) {
		if (!is_json_name(de->d_name))
			continue;
		if (count == cap) {
			char **grown = realloc(names, (cap ? cap * 2 : 16) * sizeof(*names));

			if (!grown) {
				ret = -ENOMEM;
				break;
			}
			names = grown;
			cap = cap ? cap * 2 : 16;
		}
		names[count] = strdup(de->d_name);
		if (!names[count]) {
			ret = -ENOMEM;
			break;
		}
		count++;
	}
	closedir(d);
	if (ret) {
		snprintf(err, errlen, "reading %s: %s", s->dir, strerror(-ret));
		goto out;
	}
	qsort(names, count, sizeof(*names), cmp_names);
	for (size_t i = 0; i < count && !ret; i++) {
		struct sl_registry one = { 0 };

		snprintf(path, sizeof(path), "%s/%s", s->dir, names[i]);
		ret = sl_registry_load_file(path, &one, err, errlen);
		sl_registry_free(&one);
		if (ret)
			break;
		doc = json_load_file(path, 0, NULL);
		ret = doc ? json_array_extend(all, json_object_get(doc, "services")) : -EIO;
		json_decref(doc);
		if (ret)
			snprintf(err, errlen, "%s: changed while being read", path);
	}
	if (ret)
		goto out;
	doc = json_pack("{s:O}", "services", all);
	text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(doc);
	ret = text ? sl_registry_parse(text, strlen(text), out, err, errlen) : -ENOMEM;
	if (ret) {
		char inner[SL_ERR_MAX];

		snprintf(inner, sizeof(inner), "%s", err);
		snprintf(err, errlen, "%s (across files): %s", s->dir, inner);
	}
out:
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
	free(text);
	json_decref(all);
	return ret;
}

int source_file_read(const struct source_file *s, struct sl_registry *out, char *err,
		     size_t errlen)
{
	char path[PATH_MAX + NAME_MAX + 2];

	if (!s->name[0])
		return read_dir(s, out, err, errlen);
	snprintf(path, sizeof(path), "%s/%s", s->dir, s->name);
	return sl_registry_load_file(path, out, err, errlen);
}
