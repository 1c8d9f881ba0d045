// The responder app's service worker: the page opens without a connection (network first, the last copy
// otherwise). The API is never cached: a task or a step must never come from a stale copy.
"use strict";
const CACHE = "fw-app-v1";
const SHELL = ["/app/", "/static/app.js", "/static/app.css", "/levels.css", "/levels.json"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys().then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || !SHELL.includes(url.pathname)) return;
  event.respondWith(
    fetch(event.request)
      .then((answer) => {
        const copy = answer.clone();
        caches.open(CACHE).then((cache) => cache.put(event.request, copy));
        return answer;
      })
      .catch(() => caches.match(event.request)),
  );
});
