// passkey.js: the WebAuthn ceremonies of the built-in pages of
// github.com/minimost/minimost/authn. A static file, so that the pages keep
// a Content-Security-Policy without inline script. No framework.
//
// The login page: "Sign in with a passkey" (#passkey-signin), and the
// browser's autofill of passkeys on the username field
// (autocomplete="username webauthn", conditional mediation).
// The second step of a login: "Use your passkey" (#passkey-second).
// The passkeys page: "Add a passkey" (#passkey-add).
// Endpoints come from the elements' data-begin and data-finish attributes,
// relative to the page.
"use strict";
(function () {
  function b64urlToBytes(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function bytesToB64url(buf) {
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // requestOptions turns the server's JSON into navigator.credentials.get's.
  function requestOptions(o) {
    var pk = Object.assign({}, o.publicKey);
    pk.challenge = b64urlToBytes(pk.challenge);
    if (pk.allowCredentials) {
      pk.allowCredentials = pk.allowCredentials.map(function (c) {
        return Object.assign({}, c, { id: b64urlToBytes(c.id) });
      });
    }
    return pk;
  }

  // creationOptions turns the server's JSON into navigator.credentials.create's.
  function creationOptions(o) {
    var pk = Object.assign({}, o.publicKey);
    pk.challenge = b64urlToBytes(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: b64urlToBytes(pk.user.id) });
    if (pk.excludeCredentials) {
      pk.excludeCredentials = pk.excludeCredentials.map(function (c) {
        return Object.assign({}, c, { id: b64urlToBytes(c.id) });
      });
    }
    return pk;
  }

  // credentialJSON is a PublicKeyCredential as the server reads it.
  function credentialJSON(cred) {
    var r = cred.response, out = {
      id: cred.id,
      rawId: bytesToB64url(cred.rawId),
      type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: { clientDataJSON: bytesToB64url(r.clientDataJSON) }
    };
    if (r.attestationObject) {
      out.response.attestationObject = bytesToB64url(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = bytesToB64url(r.authenticatorData);
      out.response.signature = bytesToB64url(r.signature);
      if (r.userHandle) out.response.userHandle = bytesToB64url(r.userHandle);
    }
    return out;
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (data) {
        return { ok: res.ok, status: res.status, data: data };
      });
    });
  }

  function showError(box, msg) {
    if (!box) return;
    box.textContent = msg;
    box.hidden = !msg;
  }

  function supported() {
    return !!(window.PublicKeyCredential && navigator.credentials && window.fetch);
  }

  // The login page.
  function setupSignIn(box) {
    var button = document.getElementById("passkey-button");
    var errorBox = document.getElementById("passkey-error");
    var form = document.querySelector("form[method=post]");
    var pending = null; // the AbortController of the autofill request

    function field(name) {
      var el = form && form.elements[name];
      return el ? el : null;
    }

    function signIn(mediation) {
      var controller = new AbortController();
      if (mediation === "conditional") pending = controller;
      return post(box.dataset.begin, {}).then(function (begun) {
        if (!begun.ok) throw new Error(begun.data.error || "Signing in with a passkey is unavailable right now.");
        var req = { publicKey: requestOptions(begun.data), signal: controller.signal };
        if (mediation) req.mediation = mediation;
        return navigator.credentials.get(req);
      }).then(function (cred) {
        if (!cred) throw new Error("No passkey was chosen.");
        var next = field("next"), remember = field("remember");
        return post(box.dataset.finish, {
          credential: credentialJSON(cred),
          next: next ? next.value : "",
          remember: remember ? remember.checked : false
        });
      }).then(function (done) {
        if (!done.ok) {
          throw new Error(done.status === 429 ? "Too many failed attempts. Try again later." : "Signing in with the passkey failed.");
        }
        window.location.assign(done.data.redirect || "/");
      });
    }

    function conditional() {
      if (!PublicKeyCredential.isConditionalMediationAvailable) return;
      PublicKeyCredential.isConditionalMediationAvailable().then(function (ok) {
        if (!ok) return;
        signIn("conditional").catch(function (err) {
          if (err && err.name === "AbortError") return; // the button took over
          showError(errorBox, err.message || String(err));
        });
      });
    }

    button.addEventListener("click", function () {
      showError(errorBox, "");
      if (pending) { pending.abort(); pending = null; }
      button.disabled = true;
      signIn("").catch(function (err) {
        showError(errorBox, err && err.name === "NotAllowedError" ? "The passkey request was cancelled or timed out." : (err.message || String(err)));
      }).finally(function () {
        button.disabled = false;
      });
    });
    box.hidden = false;
    conditional();
  }

  // The second step of a login, after the password: one of the user's
  // passkeys.
  function setupSecond(box) {
    var button = document.getElementById("passkey-button");
    var errorBox = document.getElementById("passkey-error");
    button.addEventListener("click", function () {
      showError(errorBox, "");
      button.disabled = true;
      post(box.dataset.begin, {}).then(function (begun) {
        if (!begun.ok) {
          throw new Error(begun.status === 429 ? "Too many failed attempts. Try again later." : "The sign-in has expired: start again from the sign-in page.");
        }
        return navigator.credentials.get({ publicKey: requestOptions(begun.data) });
      }).then(function (cred) {
        return post(box.dataset.finish, { credential: credentialJSON(cred) });
      }).then(function (done) {
        if (!done.ok) {
          throw new Error(done.status === 429 ? "Too many failed attempts. Try again later." : "The passkey was not accepted.");
        }
        window.location.assign(done.data.redirect || "/");
      }).catch(function (err) {
        showError(errorBox, err && err.name === "NotAllowedError" ? "The passkey request was cancelled or timed out." : (err.message || String(err)));
      }).finally(function () {
        button.disabled = false;
      });
    });
    box.hidden = false;
  }

  // The passkeys page.
  function setupAdd(form) {
    var errorBox = document.getElementById("passkey-error");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      showError(errorBox, "");
      var name = form.elements.name.value, password = form.elements.password.value;
      var button = form.querySelector("button[type=submit]");
      button.disabled = true;
      post(form.dataset.begin, { password: password }).then(function (begun) {
        if (begun.status === 401) throw new Error("The password is not right.");
        if (!begun.ok) throw new Error(begun.data.error || "Adding a passkey is unavailable right now.");
        return navigator.credentials.create({ publicKey: creationOptions(begun.data) });
      }).then(function (cred) {
        return post(form.dataset.finish, { name: name, credential: credentialJSON(cred) });
      }).then(function (done) {
        if (!done.ok) throw new Error(done.data.error || "The passkey was not added.");
        var url = new URL(window.location.href);
        url.search = "?notice=passkey_added";
        window.location.assign(url.toString());
      }).catch(function (err) {
        showError(errorBox, err && err.name === "NotAllowedError" ? "The passkey request was cancelled or timed out." :
          err && err.name === "InvalidStateError" ? "This device has a passkey for your account already." : (err.message || String(err)));
      }).finally(function () {
        form.elements.password.value = "";
        button.disabled = false;
      });
    });
    form.hidden = false;
  }

  function start() {
    if (!supported()) return;
    var signIn = document.getElementById("passkey-signin");
    if (signIn) setupSignIn(signIn);
    var second = document.getElementById("passkey-second");
    if (second) setupSecond(second);
    var add = document.getElementById("passkey-add");
    if (add) setupAdd(add);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
