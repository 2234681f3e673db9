// Regente's console: times in the browser's zone, live pages over Server-Sent
// Events, the package drop zone, copy buttons. Pages work without it, less live.
(function () {
  "use strict";

  var formatter = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  });

  function timeElement(ms) {
    var element = document.createElement("time");
    element.dateTime = new Date(ms).toISOString();
    element.dataset.ms = String(ms);
    element.textContent = formatter.format(new Date(ms));
    return element;
  }

  function localizeTimes(root) {
    root.querySelectorAll("time[data-ms]").forEach(function (element) {
      element.textContent = formatter.format(new Date(Number(element.dataset.ms)));
    });
  }

  // The dashboard's heat map is drawn by hour of the day in this zone.
  function rememberZone() {
    var offset = -new Date().getTimezoneOffset();
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    document.cookie = "regente_tz=" + offset + "~" + encodeURIComponent(zone) +
      "; Path=/; Max-Age=31536000; SameSite=Strict";
  }

  function setTime(id, ms) {
    var cell = document.getElementById(id);
    if (!cell) { return; }
    cell.textContent = "";
    if (ms === null || ms === undefined) { cell.textContent = "—"; } else { cell.appendChild(timeElement(ms)); }
  }

  function setText(id, text) {
    var cell = document.getElementById(id);
    if (cell) { cell.textContent = (text === null || text === undefined) ? "—" : String(text); }
  }

  function liveExecution(section) {
    var log = document.getElementById("log");
    var source = new EventSource(section.dataset.live);
    source.addEventListener("log", function (event) {
      var empty = document.getElementById("log-empty");
      if (empty) { empty.remove(); }
      JSON.parse(event.data).forEach(function (line) {
        if (log.querySelector('li[data-seq="' + line.seq + '"]')) { return; }
        var item = document.createElement("li");
        item.className = "level-" + line.level;
        item.dataset.seq = String(line.seq);
        var level = document.createElement("span");
        level.className = "level";
        level.textContent = line.level;
        var message = document.createElement("span");
        message.className = "message";
        message.textContent = line.message;
        item.append(timeElement(line.time), " ", level, " ", message);
        log.appendChild(item);
      });
      log.scrollTop = log.scrollHeight;
    });
    source.addEventListener("state", function (event) {
      var state = JSON.parse(event.data);
      var status = document.getElementById("status");
      status.textContent = state.status;
      status.className = "status status-" + state.status;
      var progress = document.getElementById("progress");
      progress.value = state.progress;
      setText("progress-text", Math.round(state.progress) + " %");
      setTime("started", state.started);
      setTime("ended", state.end);
      setText("duration", state.duration);
      setText("queue-wait", state.queue_wait);
      setText("exit-code", state.exit_code);
      setText("end-reason", state.end_reason);
      setText("return-value", state.return_value);
    });
    source.addEventListener("end", function () {
      source.close();
      var cancel = document.getElementById("cancel");
      if (cancel) { cancel.remove(); }
      section.dataset.ended = "true";
    });
  }

  function liveRuntimes(section) {
    var source = new EventSource(section.dataset.live);
    source.addEventListener("runtimes", function (event) {
      JSON.parse(event.data).forEach(function (runtime) {
        var row = section.querySelector('tr[data-runtime="' + runtime.id + '"]');
        if (!row) { return; }
        var state = row.querySelector('[data-field="state"]');
        state.textContent = runtime.online ? "online" : "offline";
        state.className = "state " + (runtime.online ? "online" : "offline");
        var seen = row.querySelector('[data-field="last-seen"]');
        seen.textContent = "";
        if (runtime.last_seen === null) { seen.textContent = "—"; } else { seen.appendChild(timeElement(runtime.last_seen)); }
        row.querySelector('[data-field="busy"]').textContent = runtime.busy + " / " + runtime.slots;
        var running = row.querySelector('[data-field="running"]');
        running.textContent = "";
        runtime.running.forEach(function (id) {
          var link = document.createElement("a");
          link.href = "/executions/" + id;
          var code = document.createElement("code");
          code.textContent = id;
          link.appendChild(code);
          running.append(link, " ");
        });
      });
    });
  }

  function dropZones() {
    document.querySelectorAll("[data-dropzone]").forEach(function (zone) {
      var input = document.getElementById(zone.dataset.dropzone);
      zone.addEventListener("dragover", function (event) { event.preventDefault(); zone.classList.add("over"); });
      zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
      zone.addEventListener("drop", function (event) {
        event.preventDefault();
        zone.classList.remove("over");
        if (event.dataTransfer && event.dataTransfer.files.length) { input.files = event.dataTransfer.files; }
      });
    });
  }

  function copyButtons() {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var text = document.getElementById(button.dataset.copy).textContent;
        navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
      });
    });
  }

  function start() {
    rememberZone();
    localizeTimes(document);
    var execution = document.querySelector("#execution[data-live]");
    if (execution) { liveExecution(execution); }
    var runtimes = document.querySelector("#runtimes[data-live]");
    if (runtimes) { liveRuntimes(runtimes); }
    dropZones();
    copyButtons();
    document.body.addEventListener("htmx:afterSwap", function (event) { localizeTimes(event.target); });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
