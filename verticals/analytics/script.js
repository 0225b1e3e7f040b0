(function () {
  var s = document.currentScript, site = s && s.getAttribute("data-site");
  if (!site || navigator.webdriver) return;
  var api = new URL("collect", s.src).href, ref = document.referrer, last;
  function send() {
    if (location.pathname === last) return;
    last = location.pathname;
    var b = JSON.stringify({site: site, url: location.href, referrer: ref});
    ref = ""; // later views come from the site itself
    if (!(navigator.sendBeacon && navigator.sendBeacon(api, b)))
      fetch(api, {method: "POST", body: b, keepalive: true}).catch(function () {});
  }
  var push = history.pushState;
  history.pushState = function () { push.apply(this, arguments); send(); };
  addEventListener("popstate", send);
  if (document.prerendering) document.addEventListener("prerenderingchange", send, {once: true});
  else send();
})();
