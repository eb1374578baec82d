// Adding the plans of a spreadsheet (.xlsx, .xls, .csv) to the queue: the file goes to
// /api/queue/upload/spreadsheet as a form; a refusal (RE Manager's, or the converter's when it
// cannot read the file) is shown with its message.

import { upload } from "./api.js";
import { byId } from "./dom.js";
import { report } from "./state.js";

/** What RE Manager said about each refused item of a batch, one line each. */
function refusals(data) {
  const lines = (data.results || [])
    .map((result, index) => (result.success === false ? `Item ${index + 1}: ${result.msg}` : null))
    .filter(Boolean);
  return [data.msg || "The spreadsheet was refused.", ...lines].join("\n");
}

export class SpreadsheetUpload {
  constructor({ onChanged }) {
    this.form = byId("upload-form");
    this.file = byId("upload-file");
    this.message = byId("upload-message");
    this.onChanged = onChanged;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
  }

  async send() {
    const file = this.file.files[0];
    if (!file) {
      report(this.message, new Error("Choose a spreadsheet file first."));
      this.file.focus();
      return;
    }
    const form = new FormData();
    form.append("spreadsheet", file, file.name);
    try {
      const data = await upload("queue/upload/spreadsheet", form);
      if (data?.success === false) {
        report(this.message, new Error(refusals(data)));
        return;
      }
      const count = data?.items?.length ?? 0;
      report(this.message, null, `${count} item${count === 1 ? "" : "s"} from ${file.name} added to the queue.`);
      this.form.reset();
      this.onChanged();
    } catch (error) {
      report(this.message, error);
    }
  }
}
