// The API key both pages send (Logs and Alerts): kept in the tab's sessionStorage, never in a URL, and
// asked for with the page's #key-dialog when the server answers 401 or 403.

export const KEY = "logsave-api-key";

export function askForKey(reason) {
  const dialog = document.querySelector("#key-dialog");
  if (reason) dialog.querySelector("p").textContent = reason;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      sessionStorage.setItem(KEY, dialog.querySelector("input").value);
      resolve();
    }, { once: true });
    if (!dialog.open) dialog.showModal();
  });
}
