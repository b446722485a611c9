/* A confirmation before JupyterHub's admin panel deletes a user (enertef-hub).
 *
 * JupyterHub's admin panel is a React bundle we cannot change; its "Delete user"
 * button sends DELETE {base_url}api/users/NAME at once. This script, loaded only on
 * the admin page (enertef-admin-panel.html, served by the hub itself from
 * /hub/enertef/static/, so a CSP of script-src 'self' allows it), wraps
 * window.fetch: such a request waits for the admin's answer in a dialog that names
 * the user and says what happens to their data (the dialog's text is rendered by
 * the hub, which knows Workbench.purge_on_delete). Confirmed, the request goes out
 * exactly as the panel made it (same URL, its _xsrf token, same headers); cancelled,
 * it is never sent and the panel stays on the user's page.
 *
 * Why fetch, not the button: the request is the one thing every way of deleting a
 * user in the panel shares, in every JupyterHub version (5.5 and 6.1 both call
 * fetch(new URL(base_url + "api/users/" + name + "?_xsrf=..."), {method: "DELETE"})),
 * and it names the user exactly. React re-renders, class names and button texts
 * do not matter; every other request (servers, groups, tokens, edits) passes
 * untouched. Until this script has run, a style rule in the template hides the
 * panel's delete button, so a script that fails to load cannot mean a deletion
 * without confirmation.
 *
 * Node's require() gets the pure parts for the unit tests (tests/unit).
 */
(function (factory) {
  "use strict";
  var api = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    api.install(window, document);
  }
})(function () {
  "use strict";

  /** The username that a request deletes, or null (pure).
   *
   * Only DELETE {baseUrl}api/users/NAME on the page's own origin: never a user's
   * servers (api/users/NAME/servers/...), tokens, groups, or another origin.
   */
  function deletedUser(method, url, baseUrl, origin) {
    if (String(method || "GET").toUpperCase() !== "DELETE") {
      return null;
    }
    var parsed;
    try {
      parsed = new URL(String(url), origin);
    } catch (e) {
      return null;
    }
    var prefix = baseUrl + "api/users/";
    if (parsed.origin !== origin || parsed.pathname.indexOf(prefix) !== 0) {
      return null;
    }
    var rest = parsed.pathname.slice(prefix.length).replace(/\/$/, "");
    if (!rest || rest.indexOf("/") !== -1) {
      return null;
    }
    try {
      return decodeURIComponent(rest);
    } catch (e) {
      return null;
    }
  }

  /** Method and URL of fetch()'s arguments: a string, a URL object or a Request (pure). */
  function requestOf(input, init) {
    var isRequest = input !== null && typeof input === "object" && "url" in input && "method" in input;
    return {
      method: (init && init.method) || (isRequest ? input.method : "GET"),
      url: isRequest ? input.url : String(input),
    };
  }

  /** Ask in the page's dialog (#enertef-delete-dialog); resolves true only for "Delete". */
  function ask(win, doc, name) {
    var dialog = doc.getElementById("enertef-delete-dialog");
    if (!dialog || typeof dialog.showModal !== "function") {
      // No dialog (an operator's own admin.html without our block): the browser's own.
      return Promise.resolve(win.confirm("Delete user " + name + "?"));
    }
    var names = dialog.querySelectorAll(".enertef-delete-name");
    for (var i = 0; i < names.length; i++) {
      names[i].textContent = name; // text, never markup
    }
    var typed = dialog.querySelector("#enertef-delete-typed"); // only when deletion purges
    var confirmButton = dialog.querySelector("#enertef-delete-confirm");
    var cancelButton = dialog.querySelector("#enertef-delete-cancel");
    function typedOk() {
      return !typed || typed.value.trim().toLowerCase() === name.toLowerCase();
    }
    if (typed) {
      typed.value = "";
    }
    confirmButton.disabled = !typedOk();
    return new Promise(function (resolve) {
      function onInput() {
        confirmButton.disabled = !typedOk();
      }
      function onCancel() {
        dialog.close("cancel");
      }
      function onClose() {
        dialog.removeEventListener("close", onClose);
        cancelButton.removeEventListener("click", onCancel);
        if (typed) {
          typed.removeEventListener("input", onInput);
        }
        resolve(dialog.returnValue === "delete" && typedOk());
      }
      dialog.addEventListener("close", onClose);
      cancelButton.addEventListener("click", onCancel);
      if (typed) {
        typed.addEventListener("input", onInput);
      }
      dialog.returnValue = ""; // Escape closes with this: a cancel
      dialog.showModal();
    });
  }

  /** Wrap win.fetch so that a user's deletion waits for the admin's confirmation. */
  function install(win, doc) {
    if (win.__enertefDeleteConfirm) {
      return;
    }
    win.__enertefDeleteConfirm = true;
    var original = win.fetch;
    var baseUrl = (win.jhdata && win.jhdata.base_url) || win.base_url || "/hub/";
    var queue = Promise.resolve(); // one question at a time
    win.fetch = function (input, init) {
      var args = arguments;
      var request = requestOf(input, init);
      var name = deletedUser(request.method, request.url, baseUrl, win.location.origin);
      if (name === null) {
        return original.apply(win, args);
      }
      var decision = queue.then(function () {
        return ask(win, doc, name);
      });
      queue = decision.catch(function () {
        return false;
      });
      return decision.then(function (confirmed) {
        if (confirmed) {
          return original.apply(win, args);
        }
        // Cancelled: the request is never sent. The panel waits on a promise that
        // never settles, so it neither reports an error nor leaves the user's page.
        return new Promise(function () {});
      });
    };
    doc.documentElement.setAttribute("data-enertef-delete-confirm", "ready");
  }

  return { deletedUser: deletedUser, requestOf: requestOf, install: install };
});
