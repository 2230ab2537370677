// sluice console: the few things a page cannot do without script. Every page works without it.
// 1. Record CSP violations, so tests (and curious operators) can read window.__cspViolations.
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
});
document.addEventListener('DOMContentLoaded', function () {
  // 2. "Are you sure?" on buttons that act on many digests at once.
  document.querySelectorAll('form[data-confirm]').forEach(function (f) {
    f.addEventListener('submit', function (e) {
      if (!window.confirm(f.getAttribute('data-confirm'))) { e.preventDefault(); }
    });
  });
  // 3. Auto refresh: ?refresh=N seconds reloads <main> in place, paused while a form field has
  // the focus or the tab is hidden, so nobody's typing is thrown away.
  var select = document.querySelector('[data-testid=refresh]');
  var seconds = parseInt(new URLSearchParams(location.search).get('refresh') || '0', 10);
  if (select) {
    select.value = String(seconds);
    select.addEventListener('change', function () {
      var u = new URL(location.href);
      if (select.value === '0') { u.searchParams.delete('refresh'); } else { u.searchParams.set('refresh', select.value); }
      location.href = u.toString();
    });
  }
  if (!(seconds > 0)) { return; }
  function busy() {
    var a = document.activeElement;
    return document.visibilityState !== 'visible' ||
      (a && a.closest && a.closest('form') && a !== select);
  }
  setInterval(function () {
    if (busy()) { return; }
    fetch(location.href, { credentials: 'same-origin' }).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (!html || busy()) { return; }
      var next = new DOMParser().parseFromString(html, 'text/html').querySelector('main');
      var main = document.querySelector('main');
      if (next && main) { main.replaceWith(next); }
    }).catch(function () {});
  }, seconds * 1000);
});
