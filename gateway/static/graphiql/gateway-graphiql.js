// The Resident Gateway's GraphiQL page: a bar above GraphiQL with the token (a role picker in
// the embedded demo) and the example operations of the token's roles. Everything this page
// loads comes from the gateway (see README.md here); tokens live in sessionStorage only, and so
// does GraphiQL's own state (tabs, history), so a token pasted into its Headers tab is never
// written to localStorage either.
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("gateway-graphiql-config").textContent);
  var h = React.createElement;
  var store = window.sessionStorage;
  var TOKEN_KEY = "resident-gateway:token";
  var ROLE_KEY = "resident-gateway:role";
  var WELCOME =
    "# " + config.title + "\n#\n" +
    (config.demo
      ? "# Pick a role above: its token goes into every request, the schema loads and\n" +
        "# an example for that role opens here. Run it with the play button (Ctrl-Enter).\n"
      : "# Paste your bearer token above: the schema loads and the examples for your\n" +
        "# roles are offered. Run a query with the play button (Ctrl-Enter).\n") +
    "#\n# Each field's description (the Docs pane) says which roles may read it, for\n" +
    "# which purposes, and where the resident's consent is needed.\n";

  // Which example the editor should show next: set by the bar, applied inside GraphiQL.
  var PendingExample = React.createContext(null);

  function claimsOf(token) {
    try {
      var part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      while (part.length % 4) part += "=";
      return JSON.parse(atob(part));
    } catch (e) {
      return null;
    }
  }

  function describeToken(token) {
    var claims = claimsOf(token);
    if (!claims) return "This is not a JWT.";
    var text = "Roles: " + ((claims.roles || []).join(", ") || "none");
    if (claims.agency) text += "; agency " + claims.agency;
    if (typeof claims.exp === "number") {
      var expires = new Date(claims.exp * 1000);
      text += expires < new Date() ? "; EXPIRED" : "; valid until " + expires.toLocaleString();
    }
    return text;
  }

  function makeFetcher(token) {
    return function (params, options) {
      var headers = {
        "Content-Type": "application/json",
        Accept: "application/graphql-response+json, application/json",
      };
      var extra = (options && options.headers) || {};
      var own = Object.keys(extra).some(function (k) {
        return k.toLowerCase() === "authorization";
      });
      Object.assign(headers, extra);
      if (token && !own) headers.Authorization = "Bearer " + token;
      return fetch(config.endpoint, {
        method: "POST",
        headers: headers,
        body: JSON.stringify(params),
        credentials: "omit",
      }).then(function (response) {
        return response.text().then(function (text) {
          try {
            return JSON.parse(text);
          } catch (e) {
            return text;
          }
        });
      });
    };
  }

  // Rendered inside GraphiQL (its toolbar), where the editors can be reached.
  function ExampleLoader() {
    var pending = React.useContext(PendingExample);
    var editors = GraphiQL.React.useEditorContext({ nonNull: true });
    var queryEditor = editors.queryEditor;
    var variableEditor = editors.variableEditor;
    React.useEffect(
      function () {
        if (!pending || !queryEditor) return;
        var current = queryEditor.getValue().trim();
        // What became of the last example offered (the page's tests wait for it).
        var outcome = document.documentElement.dataset;
        if (
          pending.onlyIfUntouched &&
          current &&
          current !== WELCOME.trim() &&
          pending.replaceable.indexOf(current) < 0
        ) {
          outcome.gatewayExample = pending.seq + ":kept"; // the user's own query: left alone
          return;
        }
        queryEditor.setValue(pending.example.query);
        if (variableEditor) {
          variableEditor.setValue(JSON.stringify(pending.example.variables, null, 2));
        }
        outcome.gatewayExample = pending.seq + ":opened";
      },
      [pending && pending.seq, queryEditor, variableEditor]
    );
    return null;
  }

  function App() {
    var _token = React.useState(store.getItem(TOKEN_KEY) || "");
    var token = _token[0], setTokenState = _token[1];
    var _role = React.useState(store.getItem(ROLE_KEY) || "");
    var role = _role[0], setRoleState = _role[1];
    var _draft = React.useState("");
    var draft = _draft[0], setDraft = _draft[1];
    var _examples = React.useState([]);
    var examples = _examples[0], setExamples = _examples[1];
    var _problem = React.useState("");
    var problem = _problem[0], setProblem = _problem[1];
    var _pending = React.useState(null);
    var pending = _pending[0], setPending = _pending[1];
    var seq = React.useRef(0);
    var shown = React.useRef([]);

    function applyToken(value, roleName) {
      value = value.trim().replace(/^bearer\s+/i, "");
      if (value) store.setItem(TOKEN_KEY, value);
      else store.removeItem(TOKEN_KEY);
      if (roleName) store.setItem(ROLE_KEY, roleName);
      else store.removeItem(ROLE_KEY);
      setTokenState(value);
      setRoleState(roleName || "");
    }

    function open(example, onlyIfUntouched) {
      seq.current += 1;
      setPending({
        example: example,
        seq: seq.current,
        onlyIfUntouched: onlyIfUntouched,
        replaceable: shown.current,
      });
    }

    React.useEffect(
      function () {
        setExamples([]);
        setProblem("");
        if (!token) return;
        var cancelled = false;
        fetch(config.examples, {
          headers: { Authorization: "Bearer " + token, Accept: "application/json" },
          credentials: "omit",
        })
          .then(function (response) {
            return response.json().then(function (body) {
              return { ok: response.ok, body: body };
            });
          })
          .then(function (answer) {
            if (cancelled) return;
            if (!answer.ok) {
              var error = (answer.body.errors || [{}])[0];
              setProblem("The gateway refused this token: " + (error.message || "unknown error"));
              return;
            }
            var found = answer.body.examples;
            var before = shown.current;
            shown.current = before.concat(
              found.map(function (e) {
                return e.query.trim();
              })
            );
            setExamples(found);
            if (found.length) open(found[0], true);
          })
          .catch(function (e) {
            if (!cancelled) setProblem("Examples could not be loaded: " + e);
          });
        return function () {
          cancelled = true;
        };
      },
      [token]
    );

    var fetcher = React.useMemo(
      function () {
        return makeFetcher(token);
      },
      [token]
    );

    var bar = [h("strong", { key: "title", className: "gw-title" }, config.title)];
    if (config.demo) {
      bar.push(
        h(
          "label",
          { key: "role", className: "gw-field" },
          "Role ",
          h(
            "select",
            {
              "aria-label": "Role",
              value: role,
              onChange: function (event) {
                var picked = config.demo.filter(function (d) {
                  return d.role === event.target.value;
                })[0];
                applyToken(picked ? picked.token : "", picked ? picked.role : "");
              },
            },
            [h("option", { key: "", value: "" }, "choose a demo role\u2026")].concat(
              config.demo.map(function (d) {
                return h("option", { key: d.role, value: d.role, title: d.description }, d.role);
              })
            )
          )
        )
      );
    }
    bar.push(
      h(
        "form",
        {
          key: "token",
          className: "gw-field",
          onSubmit: function (event) {
            event.preventDefault();
            applyToken(draft, "");
            setDraft("");
          },
        },
        h("input", {
          type: "password",
          "aria-label": "Bearer token",
          placeholder: token ? "replace the token\u2026" : "paste a bearer token\u2026",
          autoComplete: "off",
          value: draft,
          onChange: function (event) {
            setDraft(event.target.value);
          },
        }),
        h("button", { type: "submit", disabled: !draft.trim() }, "Use token"),
        token
          ? h(
              "button",
              {
                type: "button",
                onClick: function () {
                  applyToken("", "");
                },
              },
              "Forget token"
            )
          : null
      )
    );
    if (examples.length) {
      bar.push(
        h(
          "label",
          { key: "examples", className: "gw-field" },
          "Example ",
          h(
            "select",
            {
              "aria-label": "Example",
              value: "",
              onChange: function (event) {
                var index = Number(event.target.value);
                if (event.target.value !== "" && examples[index]) open(examples[index], false);
              },
            },
            [h("option", { key: "", value: "" }, "open an example\u2026")].concat(
              examples.map(function (e, index) {
                return h("option", { key: index, value: String(index) }, e.title);
              })
            )
          )
        )
      );
    }
    bar.push(
      h(
        "span",
        { key: "status", className: problem ? "gw-status gw-problem" : "gw-status", role: "status" },
        problem || (token ? describeToken(token) : "No token: the schema loads once you give one.")
      )
    );

    return h(
      PendingExample.Provider,
      { value: pending },
      h("div", { className: "gw-bar" }, bar),
      h(
        "div",
        { className: "gw-ide" },
        h(
          GraphiQL,
          {
            fetcher: fetcher,
            // No token, no introspection (it would only say UNAUTHENTICATED).
            schema: token ? undefined : null,
            storage: store,
            defaultQuery: WELCOME,
            defaultEditorToolsVisibility: "variables",
            toolbar: { additionalComponent: ExampleLoader },
          },
          h(GraphiQL.Logo, null, config.title)
        )
      )
    );
  }

  ReactDOM.createRoot(document.getElementById("gateway-graphiql")).render(h(App));
})();
