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
