// Form conveniences under the strict CSP (no inline script). An input marked data-copy-from="<id>"
// starts with what was typed in that field until the person edits it: the magic-link form takes the
// address already typed for the password sign-in. A button marked data-auto-click is pressed at once:
// a step the person already confirmed elsewhere (signing out from the account console).
(function () {
  'use strict';

  function init() {
    var auto = document.querySelector('button[data-auto-click]');
    if (auto) auto.click();
    var inputs = document.querySelectorAll('input[data-copy-from]');
    Array.prototype.forEach.call(inputs, function (input) {
      var source = document.getElementById(input.dataset.copyFrom);
      if (!source) return;
      var edited = false;
      input.addEventListener('input', function () {
        edited = true;
      });
      var copy = function () {
        if (!edited) input.value = source.value;
      };
      source.addEventListener('input', copy);
      copy();
    });
  }

  // Loaded mid-page (the login page loads it before its magic-link form): wait for the whole page.
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
