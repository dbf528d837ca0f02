// Security keys and passkeys, with @simplewebauthn/browser (loaded before this file). A form marked
// data-webauthn="register" or "authenticate" runs the ceremony when submitted: the options come
// from its data-options attribute (JSON rendered in the page) or from posting the form's fields to
// data-options-url; the browser's answer goes, as JSON, into its hidden `response` field and the
// form is posted. A cancelled or failed ceremony shows the form's [data-webauthn-error] element.
(function () {
  'use strict';
  var lib = window.SimpleWebAuthnBrowser;
  var forms = document.querySelectorAll('form[data-webauthn]');
  Array.prototype.forEach.call(forms, function (form) {
    var answer = form.elements.namedItem('response');
    var error = form.querySelector('[data-webauthn-error]');
    if (!lib || !lib.browserSupportsWebAuthn()) {
      // Nothing to offer without WebAuthn: the control stays, and says so when used.
      form.addEventListener('submit', function (event) {
        event.preventDefault();
        if (error) error.hidden = false;
      });
      return;
    }
    form.addEventListener('submit', function (event) {
      if (answer.value) return;
      event.preventDefault();
      if (error) error.hidden = true;
      options(form, event.submitter)
        .then(function (optionsJSON) {
          return form.dataset.webauthn === 'register'
            ? lib.startRegistration({ optionsJSON: optionsJSON })
            : lib.startAuthentication({ optionsJSON: optionsJSON });
        })
        .then(function (result) {
          answer.value = JSON.stringify(result);
          form.submit();
        })
        .catch(function () {
          if (error) error.hidden = false;
        });
    });
  });

  // The button pressed is part of what is asked for (the console's "Add a passkey" or "security key").
  function options(form, submitter) {
    if (form.dataset.options) return Promise.resolve(JSON.parse(form.dataset.options));
    var fields = new URLSearchParams(submitter ? new FormData(form, submitter) : new FormData(form));
    fields.delete('response');
    return fetch(form.dataset.optionsUrl, {
      method: 'POST',
      body: fields,
      credentials: 'same-origin',
      headers: { accept: 'application/json' },
    }).then(function (res) {
      if (!res.ok) throw new Error('options: ' + res.status);
      return res.json();
    });
  }
})();
