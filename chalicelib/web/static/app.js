// The pages' only script: they all work without it. It moves focus to a form's problems,
// adds Show/Hide to password fields and keeps a form from being sent twice.
(function () {
  "use strict";

  var summary = document.querySelector(".error-summary");
  if (summary) {
    summary.focus();
  }

  document.querySelectorAll("input[data-reveal]").forEach(function (input) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.textContent = input.dataset.show;
    button.setAttribute("aria-controls", input.id);
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", function () {
      var shown = input.type === "text";
      input.type = shown ? "password" : "text";
      button.textContent = shown ? input.dataset.show : input.dataset.hide;
      button.setAttribute("aria-pressed", shown ? "false" : "true");
    });
    var row = document.createElement("div");
    row.className = "reveal";
    input.parentNode.insertBefore(row, input);
    row.appendChild(input);
    row.appendChild(button);
  });

  document.querySelectorAll("form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.sent) {
        event.preventDefault();
        return;
      }
      form.dataset.sent = "1";
      form.querySelectorAll("input[type=text][data-reveal]").forEach(function (input) {
        input.type = "password";
      });
    });
  });

  // The account-request page: a proof of work (ALTCHA's: the number whose SHA-256, after the
  // challenge's salt, is the challenge) found before the form goes.
  var human = document.querySelector("form[data-human]");
  if (human && window.crypto && crypto.subtle && window.TextEncoder) {
    var go = human.querySelector("button[data-needs-script]");
    go.disabled = false;
    document.getElementById("needs-script").hidden = true;
    human.addEventListener("submit", function (event) {
      var answer = human.elements.altcha;
      if (answer.value) {
        return;
      }
      event.preventDefault();
      var status = document.getElementById("human-status");
      var challenge = JSON.parse(human.dataset.human);
      status.textContent = human.dataset.working;
      go.disabled = true;
      solve(challenge).then(function (number) {
        if (number === null) {
          status.textContent = human.dataset.failed;
          go.disabled = false;
          delete human.dataset.sent;
          return;
        }
        answer.value = btoa(JSON.stringify({
          algorithm: challenge.algorithm,
          challenge: challenge.challenge,
          number: number,
          salt: challenge.salt,
          signature: challenge.signature
        }));
        human.submit();
      });
    });
  }

  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function solve(challenge) {
    var encoder = new TextEncoder();
    var batch = 256;
    function from(start) {
      if (start > challenge.maxNumber) {
        return Promise.resolve(null);
      }
      var tries = [];
      for (var n = start; n < start + batch && n <= challenge.maxNumber; n++) {
        tries.push(crypto.subtle.digest("SHA-256", encoder.encode(challenge.salt + n)));
      }
      return Promise.all(tries).then(function (digests) {
        for (var i = 0; i < digests.length; i++) {
          if (hex(digests[i]) === challenge.challenge) {
            return start + i;
          }
        }
        return from(start + batch);
      });
    }
    return from(0);
  }

  // A page brought back by the Back button may still carry the mark of its last sending.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-sent]").forEach(function (form) {
      delete form.dataset.sent;
    });
  });

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var target = document.getElementById(button.dataset.copy);
    if (!target || !navigator.clipboard) {
      button.hidden = true;
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(target.textContent.trim()).then(function () {
        button.textContent = button.dataset.done;
      });
    });
  });
})();
