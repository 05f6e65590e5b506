// lamina/text/jinja.hpp — the template engine behind lamina/text/chat.hpp: a small interpreter
// for the part of Jinja2 that chat templates use, configured as transformers' apply_chat_template
// configures Jinja2 3.1 (sandboxed, trim_blocks, lstrip_blocks, loop controls, {% generation %}).
//
// Everything here is internal (lamina::detail::jinja); use lamina::ChatTemplate.
//
// Shape of the engine:
//   source --Lexer--> tokens (text, {{ }}, {% %}, with whitespace control already applied)
//          --Parser--> a tree of Statement and Expression nodes (syntax errors: "line L, column C: ...")
//          --Interpreter--> output, walking the tree with Python's semantics for the values.
// Values mirror Python's: None, bool, int, float, str, list, tuple, dict, plus Jinja2's Undefined,
// namespace objects, generators and callables (macros, builtins, bound methods). Containers are
// shared by reference as in Python; the sandbox leaves only namespaces changeable, and strings are
// immutable, so sharing them is cheap and safe.
//
// Work and memory are bounded (hostile templates): every node evaluated and every loop iteration
// costs a step, building a string one step per 16 bytes, building a list one per 16 items; no string
// may grow past max_output_bytes nor a list past max_output_bytes / 16 items; parsing, evaluation
// and macro calls nest at most max_depth deep (the C++ stack stays shallow); containers nested
// deeper are freed from a worklist, not by recursion. The first limit passed stops rendering with
// an error; nothing is thrown, nothing aborts.
#pragma once

#include "../config.hpp"
#include "../core/result.hpp"
#include "text_range.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

LAMINA_NAMESPACE_BEGIN

// Bounds on one render, so that a hostile template ends with an error instead of hanging or
// exhausting memory. Real chat templates need a few thousand steps and a depth below 20.
struct ChatTemplateLimits {
  std::size_t max_steps = 10'000'000;        // nodes evaluated and loop iterations, plus 1 per 16 bytes of string or list items built
  std::size_t max_depth = 256;               // nested macro calls plus nested expression/statement levels; also of the variables' JSON
  std::size_t max_output_bytes = 16u << 20;  // the output, and also any one string or list built on the way
};

namespace detail {
namespace jinja {

using ordered_json = nlohmann::ordered_json;

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

// `iterator` is what Jinja2's select, reject, map, unique, items and reverse filters return: a
// Python generator. It is always true, has no length, is not JSON, and iterating it consumes it.
enum class Kind : std::uint8_t { undefined, none, boolean, integer, floating, string, list, tuple, dict, namespace_object, callable, iterator };

// Where the bytes of a string come from, so that a rendered prompt can tell the tokenizer which
// of its bytes may hold control tokens: the template's own text and string literals are trusted;
// anything from the caller's variables (a message a player typed, a tool result) is not, nor is
// anything computed from it other than by concatenation (slicing, trim, tojson ...: conservative).
// Most strings are wholly one or the other; only mixed ones keep a list of their untrusted runs.
enum class Origin : std::uint8_t { variables, template_text, mixed };

struct Value;
struct Interpreter;
struct Arguments;
struct Object;

using Builtin = std::function<Value(Interpreter&, Arguments&)>;

// A value is a kind, a scalar and, for strings/containers/callables, a shared heap object.
struct Value {
  Kind kind = Kind::undefined;
  // A string marked safe (Jinja2's Markup, from `|safe` or `|escape`): adding a plain string to it
  // HTML-escapes the plain one, as markupsafe does, even with autoescaping off.
  bool markup = false;
  union {
    bool boolean;
    std::int64_t integer;
    double floating;
  };
  std::shared_ptr<Object> object;  // string text, list/tuple items, dict entries, callable; undefined: its name

  Value() : integer(0) {}
  static Value none() { Value v; v.kind = Kind::none; return v; }
  static Value from_bool(bool b) { Value v; v.kind = Kind::boolean; v.boolean = b; return v; }
  static Value from_int(std::int64_t i) { Value v; v.kind = Kind::integer; v.integer = i; return v; }
  static Value from_float(double f) { Value v; v.kind = Kind::floating; v.floating = f; return v; }
  static Value from_string(std::string text);         // untrusted: the caller's variables, or made from them
  static Value from_template(std::string text);       // trusted: the template's own text
  static Value undefined(std::string name);  // `name` is what the template asked for, for error messages
  static Value new_list(Kind kind = Kind::list);
  static Value new_dict(Kind kind = Kind::dict);
  static Value from_builtin(std::string name, Builtin function);

  bool is_undefined() const { return kind == Kind::undefined; }
  bool is_string() const { return kind == Kind::string; }
  bool is_number() const { return kind == Kind::integer || kind == Kind::floating || kind == Kind::boolean; }
  bool is_sequence() const { return kind == Kind::list || kind == Kind::tuple; }
  bool is_mapping() const { return kind == Kind::dict || kind == Kind::namespace_object; }
  const std::string& text() const;                       // string and undefined only
  std::vector<Value>& items() const;                     // list and tuple only
  std::vector<std::pair<Value, Value>>& entries() const;  // dict and namespace only
};

struct MacroDefinition;
struct Scope;

struct Object {
  std::string text;
  // Strings only: where `text` came from; for Origin::mixed, its untrusted byte runs (sorted,
  // not overlapping, not adjacent).
  Origin origin = Origin::variables;
  std::vector<TextRange> untrusted_runs;
  std::vector<Value> items;
  std::vector<std::pair<Value, Value>> entries;  // insertion order, as Python dicts keep it
  Builtin builtin;                                // set for builtins and bound methods
  const MacroDefinition* macro = nullptr;         // set for macros
  // The scope a macro was defined in. Weak: that scope usually holds the macro, and a strong
  // pointer would make a cycle that is never freed. Scopes live while they run, so a macro called
  // where it can be named finds its scope alive.
  std::weak_ptr<Scope> closure;
  bool unsafe = false;                            // an Undefined the sandbox gave for a refused attribute; text is the message

  Object() = default;
  Object(const Object&) = delete;
  Object& operator=(const Object&) = delete;
  // Containers nested a million deep (a template can build them one level per step) must not
  // recurse a million frames when freed: children this object alone owns are freed from a worklist.
  ~Object() {
    std::vector<std::shared_ptr<Object>> pending;
    auto take_children = [&pending](Object& parent) {
      for (Value& item : parent.items)
        if (item.object && item.object.use_count() == 1) pending.push_back(std::move(item.object));
      for (auto& entry : parent.entries) {
        if (entry.first.object && entry.first.object.use_count() == 1) pending.push_back(std::move(entry.first.object));
        if (entry.second.object && entry.second.object.use_count() == 1) pending.push_back(std::move(entry.second.object));
      }
      parent.items.clear();
      parent.entries.clear();
    };
    take_children(*this);
    while (!pending.empty()) {
      std::shared_ptr<Object> next = std::move(pending.back());
      pending.pop_back();
      take_children(*next);
    }  // `next` is freed here with no children left
  }
};

inline const std::string& Value::text() const { return object->text; }
inline std::vector<Value>& Value::items() const { return object->items; }
inline std::vector<std::pair<Value, Value>>& Value::entries() const { return object->entries; }

inline Value Value::from_string(std::string text) {
  Value v;
  v.kind = Kind::string;
  v.object = std::make_shared<Object>();
  v.object->text = std::move(text);
  return v;
}
inline Value Value::from_template(std::string text) {
  Value v = from_string(std::move(text));
  v.object->origin = Origin::template_text;
  return v;
}
inline Value Value::undefined(std::string name) {
  Value v;
  v.object = std::make_shared<Object>();
  v.object->text = std::move(name);
  return v;
}
inline Value Value::new_list(Kind kind) {
  Value v;
  v.kind = kind;
  v.object = std::make_shared<Object>();
  return v;
}
inline Value Value::new_dict(Kind kind) {
  Value v;
  v.kind = kind;
  v.object = std::make_shared<Object>();
  return v;
}
inline Value Value::from_builtin(std::string name, Builtin function) {
  Value v;
  v.kind = Kind::callable;
  v.object = std::make_shared<Object>();
  v.object->text = std::move(name);
  v.object->builtin = std::move(function);
  return v;
}

// Python truthiness; Undefined is falsy, as in Jinja2.
inline bool truthy(const Value& v) {
  switch (v.kind) {
    case Kind::undefined:
    case Kind::none: return false;
    case Kind::boolean: return v.boolean;
    case Kind::integer: return v.integer != 0;
    case Kind::floating: return v.floating != 0.0;
    case Kind::string: return !v.text().empty();
    case Kind::list:
    case Kind::tuple: return !v.items().empty();
    case Kind::dict:
    case Kind::namespace_object: return !v.entries().empty();
    case Kind::callable:
    case Kind::iterator: return true;
  }
  return false;
}

// The Python type name, for error messages ("'int' object is not iterable").
inline const char* type_name(const Value& v) {
  switch (v.kind) {
    case Kind::undefined: return "Undefined";
    case Kind::none: return "NoneType";
    case Kind::boolean: return "bool";
    case Kind::integer: return "int";
    case Kind::floating: return "float";
    case Kind::string: return "str";
    case Kind::list: return "list";
    case Kind::tuple: return "tuple";
    case Kind::dict: return "dict";
    case Kind::namespace_object: return "Namespace";
    case Kind::callable: return "function";
    case Kind::iterator: return "generator";
  }
  return "object";
}

// Python's float repr: the shortest digits that read back to the same double, in fixed notation
// for exponents -4 <= e < 16 and scientific ("1e-05", "1e+16") outside.
inline std::string python_float_repr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
  if (x == 0) return std::signbit(x) ? "-0.0" : "0.0";
  char buffer[40];
  int precision = 1;
  for (; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof buffer, "%.*e", precision - 1, x);
    if (std::strtod(buffer, nullptr) == x) break;
  }
  // buffer is "d.ddde[+-]XX": split into digits and exponent.
  std::string scientific = buffer;
  const std::size_t e_at = scientific.find('e');
  const int exponent = std::atoi(scientific.c_str() + e_at + 1);
  std::string digits;
  bool negative = false;
  for (std::size_t i = 0; i < e_at; ++i) {
    if (scientific[i] == '-') negative = true;
    else if (scientific[i] != '.') digits += scientific[i];
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out = negative ? "-" : "";
  if (exponent < -4 || exponent >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exponent_text[16];
    std::snprintf(exponent_text, sizeof exponent_text, "e%c%02d", exponent < 0 ? '-' : '+', exponent < 0 ? -exponent : exponent);
    return out + exponent_text;
  }
  if (exponent < 0) return out + "0." + std::string(static_cast<std::size_t>(-exponent - 1), '0') + digits;
  const std::size_t integer_digits = static_cast<std::size_t>(exponent) + 1;
  if (digits.size() <= integer_digits) return out + digits + std::string(integer_digits - digits.size(), '0') + ".0";
  return out + digits.substr(0, integer_digits) + "." + digits.substr(integer_digits);
}

// Python's repr of a str: single quotes unless the text holds ' and no ", escapes for \\, the
// quote, and control characters; other characters (UTF-8) as they are.
inline void append_python_string_repr(std::string& out, const std::string& s) {
  const bool use_double = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char quote = use_double ? '"' : '\'';
  out += quote;
  for (unsigned char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == static_cast<unsigned char>(quote)) { out += '\\'; out += quote; }
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else out += static_cast<char>(c);
  }
  out += quote;
}

// Python's str() (what {{ }} prints) and repr() (how containers print their elements). False when
// the value is nested deeper than `depth_left` (a list holding itself) or the text would pass
// `max_bytes`; the caller reports it.
inline bool append_python_text(std::string& out, const Value& v, bool repr, std::size_t depth_left, std::size_t max_bytes) {
  if (depth_left == 0 || out.size() > max_bytes) return false;
  switch (v.kind) {
    case Kind::undefined: return true;  // Jinja2's Undefined prints as nothing
    case Kind::none: out += "None"; return true;
    case Kind::boolean: out += v.boolean ? "True" : "False"; return true;
    case Kind::integer: out += std::to_string(v.integer); return true;
    case Kind::floating: out += python_float_repr(v.floating); return true;
    case Kind::string:
      if (repr) append_python_string_repr(out, v.text());
      else out += v.text();
      return out.size() <= max_bytes;
    case Kind::list:
    case Kind::tuple: {
      out += v.kind == Kind::list ? '[' : '(';
      bool first = true;
      for (const Value& item : v.items()) {
        if (!first) out += ", ";
        first = false;
        if (!append_python_text(out, item, true, depth_left - 1, max_bytes)) return false;
      }
      if (v.kind == Kind::tuple && v.items().size() == 1) out += ',';
      out += v.kind == Kind::list ? ']' : ')';
      return true;
    }
    case Kind::dict:
    case Kind::namespace_object: {
      if (v.kind == Kind::namespace_object) out += "<Namespace ";
      out += '{';
      bool first = true;
      for (const auto& entry : v.entries()) {
        if (!first) out += ", ";
        first = false;
        if (!append_python_text(out, entry.first, true, depth_left - 1, max_bytes)) return false;
        out += ": ";
        if (!append_python_text(out, entry.second, true, depth_left - 1, max_bytes)) return false;
      }
      out += '}';
      if (v.kind == Kind::namespace_object) out += '>';
      return true;
    }
    case Kind::callable: out += "<function " + v.text() + ">"; return true;
    case Kind::iterator: out += "<generator object>"; return true;
  }
  return true;
}

// Python ==: numbers compare by value across int/float/bool, containers element by element.
inline bool python_equal(const Value& a, const Value& b, std::size_t depth_left = 64) {
  if (depth_left == 0) return a.object == b.object;  // deeper than real data goes: identity
  if (a.is_number() && b.is_number()) {
    if (a.kind == Kind::floating || b.kind == Kind::floating) {
      const double x = a.kind == Kind::floating ? a.floating : static_cast<double>(a.kind == Kind::boolean ? a.boolean : a.integer);
      const double y = b.kind == Kind::floating ? b.floating : static_cast<double>(b.kind == Kind::boolean ? b.boolean : b.integer);
      return x == y;
    }
    const std::int64_t x = a.kind == Kind::boolean ? a.boolean : a.integer;
    const std::int64_t y = b.kind == Kind::boolean ? b.boolean : b.integer;
    return x == y;
  }
  if (a.is_sequence() && b.is_sequence()) {
    if (a.kind != b.kind || a.items().size() != b.items().size()) return false;
    for (std::size_t i = 0; i < a.items().size(); ++i)
      if (!python_equal(a.items()[i], b.items()[i], depth_left - 1)) return false;
    return true;
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::undefined:
    case Kind::none: return true;  // Jinja2: any two Undefined compare equal
    case Kind::string: return a.text() == b.text();
    case Kind::dict:
    case Kind::namespace_object: {
      if (a.kind == Kind::namespace_object) return a.object == b.object;
      if (a.entries().size() != b.entries().size()) return false;
      for (const auto& entry : a.entries()) {
        bool found = false;
        for (const auto& other : b.entries()) {
          if (python_equal(entry.first, other.first, depth_left - 1)) {
            if (!python_equal(entry.second, other.second, depth_left - 1)) return false;
            found = true;
            break;
          }
        }
        if (!found) return false;
      }
      return true;
    }
    default: return a.object == b.object;
  }
}

// ---------------------------------------------------------------------------------------------
// UTF-8: Python indexes strings by code point, so length, indexing, slicing and iteration do too.
// ---------------------------------------------------------------------------------------------
// Not text/unicode.hpp's strict decoder and encoder: a template's text is not required to be
// valid UTF-8 (a stray byte counts as one character, as it renders), and a "\ud800" escape keeps
// its lone surrogate as a Python string does, where unicode::append_utf8 would write U+FFFD.

// Byte offsets where each code point starts, plus the end. Invalid bytes count one each.
inline std::vector<std::size_t> code_point_offsets(const std::string& s) {
  std::vector<std::size_t> offsets;
  offsets.reserve(s.size() + 1);
  for (std::size_t i = 0; i < s.size();) {
    offsets.push_back(i);
    const unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t width = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + width > s.size()) width = 1;
    for (std::size_t k = 1; k < width; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) width = 1;
    i += width;
  }
  offsets.push_back(s.size());
  return offsets;
}

inline std::size_t code_point_count(const std::string& s) {
  bool ascii = true;
  for (unsigned char c : s) ascii = ascii && c < 0x80;
  return ascii ? s.size() : code_point_offsets(s).size() - 1;
}

inline std::uint32_t decode_code_point(const std::string& s, std::size_t at, std::size_t end) {
  const unsigned char c = static_cast<unsigned char>(s[at]);
  if (end - at == 1) return c;
  std::uint32_t cp = end - at == 2 ? (c & 0x1Fu) : end - at == 3 ? (c & 0x0Fu) : (c & 0x07u);
  for (std::size_t k = at + 1; k < end; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[k]) & 0x3Fu);
  return cp;
}

inline void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) out += static_cast<char>(cp);
  else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Python's str.isspace() for one code point (what strip() and split() remove by default).
inline bool is_python_space(std::uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// str.strip / lstrip / rstrip: `characters` null strips whitespace, else any code point it holds.
inline std::string python_strip(const std::string& s, const std::string* characters, bool left, bool right) {
  const std::vector<std::size_t> offsets = code_point_offsets(s);
  std::vector<std::uint32_t> strip_set;
  if (characters != nullptr) {
    const std::vector<std::size_t> set_offsets = code_point_offsets(*characters);
    for (std::size_t i = 0; i + 1 < set_offsets.size(); ++i) strip_set.push_back(decode_code_point(*characters, set_offsets[i], set_offsets[i + 1]));
  }
  auto strips = [&](std::size_t index) {
    const std::uint32_t cp = decode_code_point(s, offsets[index], offsets[index + 1]);
    if (characters == nullptr) return is_python_space(cp);
    return std::find(strip_set.begin(), strip_set.end(), cp) != strip_set.end();
  };
  std::size_t begin = 0, end = offsets.size() - 1;
  if (left)
    while (begin < end && strips(begin)) ++begin;
  if (right)
    while (end > begin && strips(end - 1)) --end;
  return s.substr(offsets[begin], offsets[end] - offsets[begin]);
}

// ---------------------------------------------------------------------------------------------
// JSON in and out
// ---------------------------------------------------------------------------------------------

// JSON to values, keeping the object's key order (ordered_json: the caller's; nlohmann::json: sorted).
// Deeper than `depth_left` sets `too_deep` (the recursion stays shallow whatever the caller passes).
template <class Json>
Value from_json(const Json& j, std::size_t depth_left, bool& too_deep) {
  if (depth_left == 0) {
    too_deep = true;
    return Value::none();
  }
  switch (j.type()) {
    case Json::value_t::null: return Value::none();
    case Json::value_t::boolean: return Value::from_bool(j.template get<bool>());
    case Json::value_t::number_integer: return Value::from_int(j.template get<std::int64_t>());
    case Json::value_t::number_unsigned: {
      const std::uint64_t u = j.template get<std::uint64_t>();
      // Past int64 Python would keep an exact big int; lamina keeps the nearest float.
      if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return Value::from_float(static_cast<double>(u));
      return Value::from_int(static_cast<std::int64_t>(u));
    }
    case Json::value_t::number_float: return Value::from_float(j.template get<double>());
    case Json::value_t::string: return Value::from_string(j.template get_ref<const std::string&>());
    case Json::value_t::array: {
      Value list = Value::new_list();
      list.items().reserve(j.size());
      for (const Json& item : j) list.items().push_back(from_json(item, depth_left - 1, too_deep));
      return list;
    }
    case Json::value_t::object: {
      Value dict = Value::new_dict();
      dict.entries().reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) dict.entries().emplace_back(Value::from_string(it.key()), from_json(it.value(), depth_left - 1, too_deep));
      return dict;
    }
    default: return Value::none();  // binary and discarded do not occur in parsed JSON
  }
}

// Marks every string in `v` (made by from_json, so owned by no one else) as the template's own:
// variables the application vouches for, such as bos_token.
inline void trust_strings(const Value& v, std::size_t depth_left) {
  if (!v.object || depth_left == 0) return;
  if (v.kind == Kind::string) v.object->origin = Origin::template_text;
  for (const Value& item : v.object->items) trust_strings(item, depth_left - 1);
  for (const auto& entry : v.object->entries) trust_strings(entry.first, depth_left - 1), trust_strings(entry.second, depth_left - 1);
}

// Python's json.dumps string escaping with ensure_ascii=False: only ", \ and control characters.
inline void append_json_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char hex[8];
          std::snprintf(hex, sizeof hex, "\\u%04x", c);
          out += hex;
        } else out += static_cast<char>(c);
    }
  }
  out += '"';
}

// ---------------------------------------------------------------------------------------------
// Lexer: template text to tokens. Whitespace control is applied here, as Jinja2's lexer does:
// `{%-`/`-%}` strip all whitespace on that side, lstrip_blocks strips the spaces and tabs before a
// block or comment tag that starts its line (unless `{%+`), trim_blocks drops the one newline
// after a block or comment tag (unless `+%}`).
// ---------------------------------------------------------------------------------------------

enum class TokenType : std::uint8_t { text, variable_begin, variable_end, block_begin, block_end, name, string, integer, floating, symbol, end };

struct Token {
  TokenType type = TokenType::end;
  std::string text;  // text, name, string (decoded), symbol
  std::int64_t integer = 0;
  double floating = 0;
  std::size_t offset = 0;  // byte offset in the normalized source, for "line L, column C"
};

// Where the error is, as "line L, column C" (1-based; columns count bytes).
inline std::string describe_position(const std::string& source, std::size_t offset) {
  std::size_t line = 1, line_start = 0;
  for (std::size_t i = 0; i < offset && i < source.size(); ++i)
    if (source[i] == '\n') ++line, line_start = i + 1;
  return "line " + std::to_string(line) + ", column " + std::to_string(offset - line_start + 1);
}

class Lexer {
 public:
  explicit Lexer(const std::string& source) : source_(source) {}

  // Tokens, or an error "line L, column C: ...".
  Result<std::vector<Token>> run() {
    std::size_t position = 0;
    bool strip_next_text = false;  // a `-%}` before this text
    while (position <= source_.size()) {
      std::size_t tag = find_tag(position);
      std::string text = source_.substr(position, (tag == std::string::npos ? source_.size() : tag) - position);
      if (strip_next_text) text = text.substr(std::min(text.size(), leading_space(text)));
      strip_next_text = false;
      if (tag == std::string::npos) {
        push_text(std::move(text), position);
        break;
      }
      const char kind = source_[tag + 1];
      const char control = tag + 2 < source_.size() ? source_[tag + 2] : '\0';
      if (control == '-') {
        std::size_t keep = text.size();
        while (keep > 0 && is_ascii_space(text[keep - 1])) --keep;
        text.resize(keep);
      } else if (control != '+' && kind != '{') {
        strip_line_indent(text, position);
      }
      push_text(std::move(text), position);
      std::size_t inside = tag + 2 + (control == '-' || control == '+' ? 1 : 0);

      if (kind == '#') {
        const std::size_t close = source_.find("#}", inside);
        if (close == std::string::npos) return error(tag, "the comment is not closed (missing '#}')");
        const bool minus = close > inside && source_[close - 1] == '-';
        const bool plus = close > inside && source_[close - 1] == '+';
        position = after_tag_end(close, 2, minus, plus, strip_next_text);
        continue;
      }
      Token begin;
      begin.type = kind == '{' ? TokenType::variable_begin : TokenType::block_begin;
      begin.offset = tag;
      tokens_.push_back(begin);
      const std::size_t first_token = tokens_.size();
      Result<std::size_t> end = lex_inside_tag(inside, kind == '{' ? '}' : '%', strip_next_text);
      if (!end) return end.take_error();
      position = *end;
      // {% raw %}: everything up to {% endraw %} is text.
      if (kind == '%' && tokens_.size() == first_token + 2 && tokens_[first_token].type == TokenType::name && tokens_[first_token].text == "raw") {
        tokens_.resize(first_token - 1);
        Result<std::size_t> after = lex_raw(position, tag, strip_next_text);
        if (!after) return after.take_error();
        position = *after;
      }
    }
    Token end;
    end.type = TokenType::end;
    end.offset = source_.size();
    tokens_.push_back(end);
    return std::move(tokens_);
  }

 private:
  static bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
  static std::size_t leading_space(const std::string& text) {
    std::size_t n = 0;
    while (n < text.size() && is_ascii_space(text[n])) ++n;
    return n;
  }
  Error error(std::size_t offset, const std::string& message) const {
    return fail(ErrorCode::invalid_format, describe_position(source_, offset) + ": " + message);
  }

  std::size_t find_tag(std::size_t from) const {
    for (std::size_t i = from; i + 1 < source_.size(); ++i)
      if (source_[i] == '{' && (source_[i + 1] == '{' || source_[i + 1] == '%' || source_[i + 1] == '#')) return i;
    return std::string::npos;
  }

  void push_text(std::string text, std::size_t offset) {
    if (text.empty()) return;
    Token token;
    token.type = TokenType::text;
    token.text = std::move(text);
    token.offset = offset;
    tokens_.push_back(std::move(token));
  }

  // lstrip_blocks: the spaces and tabs between the start of the line and the tag go, when only
  // they stand there. `text` began at `text_start` in the source.
  void strip_line_indent(std::string& text, std::size_t text_start) const {
    std::size_t i = text.size();
    while (i > 0 && (text[i - 1] == ' ' || text[i - 1] == '\t' || text[i - 1] == '\v' || text[i - 1] == '\f' || text[i - 1] == '\r')) --i;
    const bool at_line_start = i > 0 ? text[i - 1] == '\n' : (text_start == 0 || source_[text_start - 1] == '\n');
    if (at_line_start) text.resize(i);
  }

  // Past a tag's closing marker at `close` (`marker_size` bytes): `-` strips the next text's
  // leading whitespace, otherwise trim_blocks drops one newline unless `+`.
  std::size_t after_tag_end(std::size_t close, std::size_t marker_size, bool minus, bool plus, bool& strip_next_text) const {
    std::size_t position = close + marker_size;
    if (minus) strip_next_text = true;
    else if (!plus && position < source_.size() && source_[position] == '\n') ++position;
    return position;
  }

  Result<std::size_t> lex_raw(std::size_t position, std::size_t raw_tag, bool& strip_next_text) {
    for (std::size_t search = position;;) {
      const std::size_t tag = source_.find("{%", search);
      if (tag == std::string::npos) return error(raw_tag, "'raw' is not closed (missing '{% endraw %}')");
      std::size_t i = tag + 2;
      const bool minus = i < source_.size() && source_[i] == '-';
      if (i < source_.size() && (source_[i] == '-' || source_[i] == '+')) ++i;
      while (i < source_.size() && is_ascii_space(source_[i])) ++i;
      if (source_.compare(i, 6, "endraw") != 0) {
        search = tag + 2;
        continue;
      }
      i += 6;
      while (i < source_.size() && is_ascii_space(source_[i])) ++i;
      bool close_minus = false, close_plus = false;
      if (i < source_.size() && (source_[i] == '-' || source_[i] == '+')) close_minus = source_[i] == '-', close_plus = source_[i] == '+', ++i;
      if (source_.compare(i, 2, "%}") != 0) return error(i, "expected '%}' after 'endraw'");
      std::string text = source_.substr(position, tag - position);
      if (strip_next_text) text = text.substr(std::min(text.size(), leading_space(text)));
      strip_next_text = false;
      if (minus) {
        std::size_t keep = text.size();
        while (keep > 0 && is_ascii_space(text[keep - 1])) --keep;
        text.resize(keep);
      }
      push_text(std::move(text), position);
      return after_tag_end(i, 2, close_minus, close_plus, strip_next_text);
    }
  }

  // Tokens of an expression or statement up to its closing `}}` / `%}`; returns where text resumes.
  Result<std::size_t> lex_inside_tag(std::size_t i, char closing, bool& strip_next_text) {
    int bracket_depth = 0;
    const std::size_t tag_start = i;
    while (true) {
      while (i < source_.size() && is_ascii_space(source_[i])) ++i;
      if (i >= source_.size()) return error(tag_start - 2, closing == '}' ? "the expression is not closed (missing '}}')" : "the statement is not closed (missing '%}')");
      const char c = source_[i];
      // The closing marker, possibly with whitespace control; inside brackets `}}` closes a dict.
      if (bracket_depth == 0 || closing == '%') {
        const bool control = (c == '-' || c == '+') && i + 2 < source_.size() && source_[i + 1] == closing && source_[i + 2] == '}';
        if (control || (c == closing && i + 1 < source_.size() && source_[i + 1] == '}')) {
          Token end;
          end.type = closing == '}' ? TokenType::variable_end : TokenType::block_end;
          end.offset = i;
          tokens_.push_back(end);
          const std::size_t marker = control ? i + 1 : i;
          if (closing == '}') {  // trim_blocks does not apply to {{ }}
            if (control && c == '-') strip_next_text = true;
            return marker + 2;
          }
          return after_tag_end(marker, 2, control && c == '-', control && c == '+', strip_next_text);
        }
      }
      Token token;
      token.offset = i;
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        std::size_t j = i;
        while (j < source_.size() && (std::isalnum(static_cast<unsigned char>(source_[j])) || source_[j] == '_')) ++j;
        token.type = TokenType::name;
        token.text = source_.substr(i, j - i);
        i = j;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        Result<std::size_t> after = lex_number(i, token);
        if (!after) return after.take_error();
        i = *after;
      } else if (c == '\'' || c == '"') {
        Result<std::size_t> after = lex_string(i, token);
        if (!after) return after.take_error();
        i = *after;
      } else {
        static const char* const symbols[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "(", ")", "[", "]", "{", "}",
                                              ",", ".", ":", "|", "=", "<", ">", ";"};
        const char* found = nullptr;
        for (const char* symbol : symbols)
          if (source_.compare(i, std::strlen(symbol), symbol) == 0) {
            found = symbol;
            break;
          }
        if (found == nullptr) return error(i, std::string("unexpected character '") + c + "'");
        token.type = TokenType::symbol;
        token.text = found;
        i += token.text.size();
        if (token.text == "(" || token.text == "[" || token.text == "{") ++bracket_depth;
        if ((token.text == ")" || token.text == "]" || token.text == "}") && bracket_depth > 0) --bracket_depth;
      }
      tokens_.push_back(std::move(token));
    }
  }

  Result<std::size_t> lex_number(std::size_t i, Token& token) const {
    std::size_t j = i;
    std::string digits;
    bool is_float = false;
    auto take_digits = [&] {
      while (j < source_.size() && (std::isdigit(static_cast<unsigned char>(source_[j])) || (source_[j] == '_' && !digits.empty()))) {
        if (source_[j] != '_') digits += source_[j];
        ++j;
      }
    };
    take_digits();
    if (j + 1 < source_.size() && source_[j] == '.' && std::isdigit(static_cast<unsigned char>(source_[j + 1]))) {
      is_float = true;
      digits += source_[j++];
      take_digits();
    }
    if (j < source_.size() && (source_[j] == 'e' || source_[j] == 'E')) {
      std::size_t k = j + 1;
      if (k < source_.size() && (source_[k] == '+' || source_[k] == '-')) ++k;
      if (k < source_.size() && std::isdigit(static_cast<unsigned char>(source_[k]))) {
        is_float = true;
        digits += 'e';
        digits += source_.substr(j + 1, k - j - 1);
        j = k;
        take_digits();
      }
    }
    if (is_float) {
      token.type = TokenType::floating;
      token.floating = std::strtod(digits.c_str(), nullptr);
    } else {
      token.type = TokenType::integer;
      std::int64_t value = 0;
      for (char d : digits) {
        if (value > (std::numeric_limits<std::int64_t>::max() - (d - '0')) / 10) return error(i, "integer literal too large");
        value = value * 10 + (d - '0');
      }
      token.integer = value;
    }
    return j;
  }

  // A string literal with Python's escapes (\n \t \r \\ \' \" \xNN \uNNNN \UNNNNNNNN \0).
  Result<std::size_t> lex_string(std::size_t i, Token& token) const {
    const char quote = source_[i];
    std::size_t j = i + 1;
    std::string value;
    while (true) {
      if (j >= source_.size()) return error(i, "the string is not closed");
      const char c = source_[j];
      if (c == quote) break;
      if (c != '\\' || j + 1 >= source_.size()) {
        value += c;
        ++j;
        continue;
      }
      const char e = source_[j + 1];
      j += 2;
      switch (e) {
        case 'n': value += '\n'; break;
        case 't': value += '\t'; break;
        case 'r': value += '\r'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'v': value += '\v'; break;
        case 'a': value += '\a'; break;
        case '0': value += '\0'; break;
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case '\n': break;  // a backslash-newline continues the line
        case 'x':
        case 'u':
        case 'U': {
          const std::size_t width = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          std::uint32_t cp = 0;
          for (std::size_t k = 0; k < width; ++k, ++j) {
            const char h = j < source_.size() ? source_[j] : '\0';
            if (!std::isxdigit(static_cast<unsigned char>(h))) return error(j, "invalid escape in string literal");
            cp = cp * 16 + static_cast<std::uint32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
          }
          if (cp > 0x10FFFF) return error(j, "invalid code point in string literal");
          append_utf8(value, cp);
          break;
        }
        default:  // Python keeps unknown escapes as they are
          value += '\\';
          value += e;
      }
    }
    token.type = TokenType::string;
    token.text = std::move(value);
    return j + 1;
  }

  const std::string& source_;
  std::vector<Token> tokens_;
};

// ---------------------------------------------------------------------------------------------
// Syntax tree
// ---------------------------------------------------------------------------------------------

enum class ExpressionType : std::uint8_t {
  literal, name, list, tuple, dict, attribute, subscript, slice, call, filter, test,
  negate, unary_plus, logical_not, logical_and, logical_or, binary, compare, conditional
};

struct Expression;
using ExpressionPtr = std::unique_ptr<Expression>;

struct Expression {
  ExpressionType type = ExpressionType::literal;
  std::size_t offset = 0;
  Value literal;                              // literal
  std::string name;                           // name, attribute, filter, test, binary operator
  std::vector<ExpressionPtr> operands;        // call/filter/test: [subject or callee, positional...];
                                              // dict: [key, value, key, value...]; slice: [start, stop, step] (null = absent);
                                              // conditional: [value, condition, otherwise (may be null)]
  std::vector<std::string> keyword_names;     // call/filter/test keyword arguments, parallel to keyword_values
  std::vector<ExpressionPtr> keyword_values;
  std::vector<std::string> operators;         // compare: one per operand after the first ("==", "in", "not in"...)
};

enum class StatementType : std::uint8_t { text, output, if_chain, for_loop, set, set_block, macro, call_block, filter_block, break_loop, continue_loop, body };

struct Statement;
using StatementPtr = std::unique_ptr<Statement>;
using Body = std::vector<StatementPtr>;

struct MacroDefinition {
  std::string name;
  std::vector<std::string> parameters;
  std::vector<ExpressionPtr> defaults;  // one per parameter; null when it has none
  Body body;
};

struct Statement {
  StatementType type = StatementType::text;
  std::size_t offset = 0;
  std::string text;                  // text
  std::vector<ExpressionPtr> expressions;  // output: [value]; if_chain: one condition per branch;
                                           // for_loop: [target, iterable, filter (may be null)];
                                           // set: [target, value]; set_block: [target, filter (may be null)];
                                           // call_block: [call]; filter_block: [filter with a null subject]
  std::vector<Body> bodies;          // if_chain: one per condition, then else; for_loop: [body, else]; others: [body]
  std::unique_ptr<MacroDefinition> macro;  // macro, and the caller of a call_block
};

// ---------------------------------------------------------------------------------------------
// Parser: tokens to tree, recursive descent with Jinja2's precedence (lowest first):
//   a if c else b  <  or  <  and  <  not  <  comparisons, in, not in  <  + -  <  ~  <  * / // %
//   <  **  <  unary - +  <  primary with .attr [item] (call), then | filter and `is` test.
// ---------------------------------------------------------------------------------------------

class Parser {
 public:
  Parser(const std::string& source, std::vector<Token> tokens, const ChatTemplateLimits& limits)
      : source_(source), tokens_(std::move(tokens)), limits_(limits) {}

  Result<Body> run() {
    Body body = parse_body({});
    if (!error_.empty()) return fail(ErrorCode::invalid_format, error_);
    return body;
  }

 private:
  // --- token helpers; after the first error every parse function returns quickly ---
  const Token& current() const { return tokens_[position_]; }
  const Token& peek(std::size_t ahead = 1) const { return tokens_[std::min(position_ + ahead, tokens_.size() - 1)]; }
  bool failed() const { return !error_.empty(); }
  void advance() {
    if (position_ + 1 < tokens_.size()) ++position_;
  }
  bool is_symbol(const char* symbol) const { return current().type == TokenType::symbol && current().text == symbol; }
  bool is_name(const char* name) const { return current().type == TokenType::name && current().text == name; }
  void error_at(std::size_t offset, const std::string& message) {
    if (error_.empty()) error_ = describe_position(source_, offset) + ": " + message;
  }
  std::string describe_current() const {
    switch (current().type) {
      case TokenType::end: return "end of template";
      case TokenType::block_end: return "end of statement block";
      case TokenType::variable_end: return "end of print statement";
      case TokenType::text: return "template text";
      case TokenType::string: return "string";
      case TokenType::integer:
      case TokenType::floating: return "number";
      default: return "'" + current().text + "'";
    }
  }
  bool expect_symbol(const char* symbol) {
    if (is_symbol(symbol)) return advance(), true;
    error_at(current().offset, std::string("expected '") + symbol + "', got " + describe_current());
    return false;
  }
  bool expect_block_end() {
    if (current().type == TokenType::block_end) return advance(), true;
    error_at(current().offset, "expected end of statement block, got " + describe_current());
    return false;
  }
  std::string expect_identifier() {
    if (current().type == TokenType::name) {
      std::string name = current().text;
      advance();
      return name;
    }
    error_at(current().offset, "expected a name, got " + describe_current());
    return {};
  }
  ExpressionPtr node(ExpressionType type, std::size_t offset) {
    ExpressionPtr e = std::make_unique<Expression>();
    e->type = type;
    e->offset = offset;
    return e;
  }

  // Nesting guard: a template of 100,000 '(' must not overflow the parser's stack.
  struct DepthGuard {
    Parser& parser;
    explicit DepthGuard(Parser& p) : parser(p) {
      if (++parser.depth_ > parser.limits_.max_depth) parser.error_at(parser.current().offset, "nested too deeply (more than " + std::to_string(parser.limits_.max_depth) + " levels)");
    }
    ~DepthGuard() { --parser.depth_; }
  };

  // --- statements ---

  // Statements until a block tag whose name is in `ends` (left as current token: the tag name),
  // or the end of the template when `ends` is empty.
  Body parse_body(const std::vector<const char*>& ends) {
    Body body;
    DepthGuard guard(*this);
    while (!failed()) {
      const Token& token = current();
      if (token.type == TokenType::end) {
        if (!ends.empty()) {
          std::string expected;
          for (const char* end : ends) expected += (expected.empty() ? "'" : " or '") + std::string(end) + "'";
          error_at(token.offset, "unexpected end of template, expected " + expected);
        }
        return body;
      }
      if (token.type == TokenType::text) {
        StatementPtr s = std::make_unique<Statement>();
        s->type = StatementType::text;
        s->text = token.text;
        s->offset = token.offset;
        body.push_back(std::move(s));
        advance();
      } else if (token.type == TokenType::variable_begin) {
        StatementPtr s = std::make_unique<Statement>();
        s->type = StatementType::output;
        s->offset = token.offset;
        advance();
        s->expressions.push_back(parse_tuple_expression());
        if (failed()) return body;
        if (current().type != TokenType::variable_end) {
          error_at(current().offset, "expected end of print statement, got " + describe_current());
          return body;
        }
        advance();
        body.push_back(std::move(s));
      } else if (token.type == TokenType::block_begin) {
        advance();
        if (current().type != TokenType::name) {
          error_at(current().offset, "expected a statement name, got " + describe_current());
          return body;
        }
        for (const char* end : ends)
          if (current().text == end) return body;
        StatementPtr s = parse_statement();
        if (s) body.push_back(std::move(s));
      } else {
        error_at(token.offset, "unexpected " + describe_current());
      }
    }
    return body;
  }

  StatementPtr parse_statement() {
    const std::string tag = current().text;
    const std::size_t offset = current().offset;
    StatementPtr s = std::make_unique<Statement>();
    s->offset = offset;
    advance();
    if (tag == "if") {
      s->type = StatementType::if_chain;
      s->expressions.push_back(parse_expression());
      expect_block_end();
      while (!failed()) {
        s->bodies.push_back(parse_body({"elif", "else", "endif"}));
        if (failed()) break;
        const std::string end = current().text;
        advance();
        if (end == "elif") {
          s->expressions.push_back(parse_expression());
          expect_block_end();
        } else if (end == "else") {
          expect_block_end();
          s->bodies.push_back(parse_body({"endif"}));
          advance();
          expect_block_end();
          break;
        } else {
          expect_block_end();
          break;
        }
      }
    } else if (tag == "for") {
      s->type = StatementType::for_loop;
      s->expressions.push_back(parse_assignment_target(false));
      if (!is_name("in")) error_at(current().offset, "expected 'in', got " + describe_current());
      advance();
      s->expressions.push_back(parse_tuple_expression(/*allow_condition=*/false));
      s->expressions.push_back(nullptr);
      if (is_name("if")) {
        advance();
        s->expressions[2] = parse_expression();
      }
      if (is_name("recursive")) error_at(current().offset, "recursive for loops are not supported");
      expect_block_end();
      ++loop_depth_;
      s->bodies.push_back(parse_body({"else", "endfor"}));
      --loop_depth_;
      if (failed()) return nullptr;
      if (is_name("else")) {
        advance();
        expect_block_end();
        s->bodies.push_back(parse_body({"endfor"}));
      } else {
        s->bodies.emplace_back();
      }
      advance();
      expect_block_end();
    } else if (tag == "set") {
      ExpressionPtr target = parse_assignment_target(true);
      if (is_symbol("=")) {
        advance();
        s->type = StatementType::set;
        s->expressions.push_back(std::move(target));
        s->expressions.push_back(parse_tuple_expression());
        expect_block_end();
      } else {
        s->type = StatementType::set_block;
        if (target && target->type != ExpressionType::name) error_at(offset, "a set block assigns to a single name");
        s->expressions.push_back(std::move(target));
        s->expressions.push_back(is_symbol("|") ? parse_filters(nullptr) : nullptr);
        expect_block_end();
        s->bodies.push_back(parse_body({"endset"}));
        advance();
        expect_block_end();
      }
    } else if (tag == "macro") {
      s->type = StatementType::macro;
      s->macro = std::make_unique<MacroDefinition>();
      s->macro->name = expect_identifier();
      parse_parameters(*s->macro);
      expect_block_end();
      s->macro->body = parse_body({"endmacro"});
      advance();
      if (current().type == TokenType::name) advance();  // {% endmacro name %}
      expect_block_end();
    } else if (tag == "call") {
      s->type = StatementType::call_block;
      s->macro = std::make_unique<MacroDefinition>();
      s->macro->name = "caller";
      if (is_symbol("(")) parse_parameters(*s->macro);
      ExpressionPtr call = parse_expression();
      if (!failed() && (!call || call->type != ExpressionType::call)) error_at(offset, "expected a macro call after 'call'");
      s->expressions.push_back(std::move(call));
      expect_block_end();
      s->macro->body = parse_body({"endcall"});
      advance();
      expect_block_end();
    } else if (tag == "filter") {
      s->type = StatementType::filter_block;
      ExpressionPtr filter = node(ExpressionType::filter, current().offset);
      filter->operands.push_back(nullptr);
      parse_filter_name_and_arguments(*filter);
      s->expressions.push_back(std::move(filter));
      expect_block_end();
      s->bodies.push_back(parse_body({"endfilter"}));
      advance();
      expect_block_end();
    } else if (tag == "generation") {
      // transformers' tag that marks the assistant's tokens; rendering it is rendering its body.
      s->type = StatementType::body;
      expect_block_end();
      s->bodies.push_back(parse_body({"endgeneration"}));
      advance();
      expect_block_end();
    } else if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) error_at(offset, "'" + tag + "' outside of a for loop");
      s->type = tag == "break" ? StatementType::break_loop : StatementType::continue_loop;
      expect_block_end();
    } else {
      error_at(offset, "unknown statement '" + tag + "'");
      return nullptr;
    }
    return s;
  }

  // `x`, `a, b`, `(a, b)`; with `allow_attribute`, `ns.attr` too (set only).
  ExpressionPtr parse_assignment_target(bool allow_attribute) {
    ExpressionPtr tuple = node(ExpressionType::tuple, current().offset);
    bool parenthesized = false;
    if (is_symbol("(")) parenthesized = true, advance();
    while (!failed()) {
      ExpressionPtr name = node(ExpressionType::name, current().offset);
      name->name = expect_identifier();
      if (allow_attribute && is_symbol(".")) {
        advance();
        ExpressionPtr attribute = node(ExpressionType::attribute, name->offset);
        attribute->name = expect_identifier();
        attribute->operands.push_back(std::move(name));
        name = std::move(attribute);
      }
      tuple->operands.push_back(std::move(name));
      if (!is_symbol(",")) break;
      advance();
      if (current().type != TokenType::name) break;
    }
    if (parenthesized) expect_symbol(")");
    if (tuple->operands.size() == 1 && !parenthesized) return std::move(tuple->operands[0]);
    return tuple;
  }

  void parse_parameters(MacroDefinition& macro) {
    if (!expect_symbol("(")) return;
    while (!failed() && !is_symbol(")")) {
      macro.parameters.push_back(expect_identifier());
      if (is_symbol("=")) {
        advance();
        macro.defaults.push_back(parse_expression());
      } else {
        macro.defaults.push_back(nullptr);
      }
      if (!is_symbol(",")) break;
      advance();
    }
    expect_symbol(")");
  }

  // --- expressions ---

  // An expression, or several separated by commas: a tuple (`{{ a, b }}`, `for x in a, b`).
  ExpressionPtr parse_tuple_expression(bool allow_condition = true) {
    const std::size_t offset = current().offset;
    ExpressionPtr first = allow_condition ? parse_expression() : parse_or();
    if (!is_symbol(",")) return first;
    ExpressionPtr tuple = node(ExpressionType::tuple, offset);
    tuple->operands.push_back(std::move(first));
    while (is_symbol(",") && !failed()) {
      advance();
      if (current().type == TokenType::block_end || current().type == TokenType::variable_end) break;
      tuple->operands.push_back(allow_condition ? parse_expression() : parse_or());
    }
    return tuple;
  }

  ExpressionPtr parse_expression() {
    DepthGuard guard(*this);
    if (failed()) return nullptr;
    const std::size_t offset = current().offset;
    ExpressionPtr value = parse_or();
    while (is_name("if") && !failed()) {
      advance();
      ExpressionPtr conditional = node(ExpressionType::conditional, offset);
      conditional->operands.push_back(std::move(value));
      conditional->operands.push_back(parse_or());
      if (is_name("else")) {
        advance();
        conditional->operands.push_back(parse_expression());
      } else {
        conditional->operands.push_back(nullptr);
      }
      value = std::move(conditional);
    }
    return value;
  }

  ExpressionPtr parse_or() {
    ExpressionPtr left = parse_and();
    while (is_name("or") && !failed()) {
      ExpressionPtr e = node(ExpressionType::logical_or, current().offset);
      advance();
      e->operands.push_back(std::move(left));
      e->operands.push_back(parse_and());
      left = std::move(e);
    }
    return left;
  }

  ExpressionPtr parse_and() {
    ExpressionPtr left = parse_not();
    while (is_name("and") && !failed()) {
      ExpressionPtr e = node(ExpressionType::logical_and, current().offset);
      advance();
      e->operands.push_back(std::move(left));
      e->operands.push_back(parse_not());
      left = std::move(e);
    }
    return left;
  }

  ExpressionPtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(*this);
      if (failed()) return nullptr;
      ExpressionPtr e = node(ExpressionType::logical_not, current().offset);
      advance();
      e->operands.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  ExpressionPtr parse_compare() {
    const std::size_t offset = current().offset;
    ExpressionPtr first = parse_add();
    ExpressionPtr compare;
    while (!failed()) {
      std::string op;
      if (current().type == TokenType::symbol && (current().text == "==" || current().text == "!=" || current().text == "<" ||
                                                  current().text == ">" || current().text == "<=" || current().text == ">=")) {
        op = current().text;
        advance();
      } else if (is_name("in")) {
        op = "in";
        advance();
      } else if (is_name("not") && peek().type == TokenType::name && peek().text == "in") {
        op = "not in";
        advance();
        advance();
      } else {
        break;
      }
      if (!compare) {
        compare = node(ExpressionType::compare, offset);
        compare->operands.push_back(std::move(first));
      }
      compare->operators.push_back(op);
      compare->operands.push_back(parse_add());
    }
    return compare ? std::move(compare) : std::move(first);
  }

  ExpressionPtr binary(std::string op, ExpressionPtr left, ExpressionPtr right, std::size_t offset) {
    ExpressionPtr e = node(ExpressionType::binary, offset);
    e->name = std::move(op);
    e->operands.push_back(std::move(left));
    e->operands.push_back(std::move(right));
    return e;
  }

  ExpressionPtr parse_add() {
    ExpressionPtr left = parse_concat();
    while ((is_symbol("+") || is_symbol("-")) && !failed()) {
      const std::string op = current().text;
      const std::size_t offset = current().offset;
      advance();
      left = binary(op, std::move(left), parse_concat(), offset);
    }
    return left;
  }

  ExpressionPtr parse_concat() {
    ExpressionPtr left = parse_multiply();
    while (is_symbol("~") && !failed()) {
      const std::size_t offset = current().offset;
      advance();
      left = binary("~", std::move(left), parse_multiply(), offset);
    }
    return left;
  }

  ExpressionPtr parse_multiply() {
    ExpressionPtr left = parse_power();
    while ((is_symbol("*") || is_symbol("/") || is_symbol("//") || is_symbol("%")) && !failed()) {
      const std::string op = current().text;
      const std::size_t offset = current().offset;
      advance();
      left = binary(op, std::move(left), parse_power(), offset);
    }
    return left;
  }

  ExpressionPtr parse_power() {
    ExpressionPtr left = parse_unary(true);
    while (is_symbol("**") && !failed()) {
      const std::size_t offset = current().offset;
      advance();
      left = binary("**", std::move(left), parse_unary(true), offset);
    }
    return left;
  }

  ExpressionPtr parse_unary(bool with_filters) {
    DepthGuard guard(*this);
    if (failed()) return nullptr;
    ExpressionPtr value;
    if (is_symbol("-") || is_symbol("+")) {
      value = node(is_symbol("-") ? ExpressionType::negate : ExpressionType::unary_plus, current().offset);
      advance();
      value->operands.push_back(parse_unary(false));
    } else {
      value = parse_postfix(parse_primary());
    }
    return with_filters ? parse_filters(std::move(value)) : std::move(value);
  }

  ExpressionPtr parse_primary() {
    const Token& token = current();
    const std::size_t offset = token.offset;
    switch (token.type) {
      case TokenType::name: {
        ExpressionPtr e = node(ExpressionType::literal, offset);
        if (token.text == "true" || token.text == "True") e->literal = Value::from_bool(true);
        else if (token.text == "false" || token.text == "False") e->literal = Value::from_bool(false);
        else if (token.text == "none" || token.text == "None") e->literal = Value::none();
        else {
          e->type = ExpressionType::name;
          e->name = token.text;
        }
        advance();
        return e;
      }
      case TokenType::string: {
        std::string text;
        while (current().type == TokenType::string) text += current().text, advance();  // "a" "b" is "ab"
        ExpressionPtr e = node(ExpressionType::literal, offset);
        e->literal = Value::from_template(std::move(text));
        return e;
      }
      case TokenType::integer:
      case TokenType::floating: {
        ExpressionPtr e = node(ExpressionType::literal, offset);
        e->literal = token.type == TokenType::integer ? Value::from_int(token.integer) : Value::from_float(token.floating);
        advance();
        return e;
      }
      case TokenType::symbol:
        if (token.text == "(") {
          advance();
          if (is_symbol(")")) {
            advance();
            return node(ExpressionType::tuple, offset);
          }
          ExpressionPtr inner = parse_expression();
          if (is_symbol(",")) {
            ExpressionPtr tuple = node(ExpressionType::tuple, offset);
            tuple->operands.push_back(std::move(inner));
            while (is_symbol(",") && !failed()) {
              advance();
              if (is_symbol(")")) break;
              tuple->operands.push_back(parse_expression());
            }
            inner = std::move(tuple);
          }
          expect_symbol(")");
          return inner;
        }
        if (token.text == "[") {
          ExpressionPtr list = node(ExpressionType::list, offset);
          advance();
          while (!is_symbol("]") && !failed()) {
            list->operands.push_back(parse_expression());
            if (!is_symbol(",")) break;
            advance();
          }
          expect_symbol("]");
          return list;
        }
        if (token.text == "{") {
          ExpressionPtr dict = node(ExpressionType::dict, offset);
          advance();
          while (!is_symbol("}") && !failed()) {
            dict->operands.push_back(parse_expression());
            expect_symbol(":");
            dict->operands.push_back(parse_expression());
            if (!is_symbol(",")) break;
            advance();
          }
          expect_symbol("}");
          return dict;
        }
        break;
      default: break;
    }
    error_at(offset, "unexpected " + describe_current());
    return nullptr;
  }

  ExpressionPtr parse_postfix(ExpressionPtr value) {
    while (!failed()) {
      const std::size_t offset = current().offset;
      if (is_symbol(".")) {
        advance();
        ExpressionPtr e = node(ExpressionType::attribute, offset);
        if (current().type == TokenType::integer) {  // a.0 is a[0]
          e->type = ExpressionType::subscript;
          ExpressionPtr index = node(ExpressionType::literal, current().offset);
          index->literal = Value::from_int(current().integer);
          advance();
          e->operands.push_back(std::move(value));
          e->operands.push_back(std::move(index));
        } else {
          e->name = expect_identifier();
          e->operands.push_back(std::move(value));
        }
        value = std::move(e);
      } else if (is_symbol("[")) {
        advance();
        ExpressionPtr e = node(ExpressionType::subscript, offset);
        e->operands.push_back(std::move(value));
        e->operands.push_back(parse_subscript());
        expect_symbol("]");
        value = std::move(e);
      } else if (is_symbol("(")) {
        ExpressionPtr call = node(ExpressionType::call, offset);
        call->operands.push_back(std::move(value));
        parse_call_arguments(*call);
        value = std::move(call);
      } else {
        break;
      }
    }
    return value;
  }

  // Inside [ ]: an index, or a slice start:stop:step with any part left out.
  ExpressionPtr parse_subscript() {
    const std::size_t offset = current().offset;
    ExpressionPtr start;
    if (!is_symbol(":")) {
      start = parse_expression();
      if (!is_symbol(":")) return start;
    }
    ExpressionPtr slice = node(ExpressionType::slice, offset);
    slice->operands.push_back(std::move(start));
    advance();  // ':'
    slice->operands.push_back(is_symbol("]") || is_symbol(":") ? nullptr : parse_expression());
    if (is_symbol(":")) {
      advance();
      slice->operands.push_back(is_symbol("]") ? nullptr : parse_expression());
    } else {
      slice->operands.push_back(nullptr);
    }
    return slice;
  }

  void parse_call_arguments(Expression& call) {
    if (!expect_symbol("(")) return;
    while (!is_symbol(")") && !failed()) {
      if (current().type == TokenType::name && peek().type == TokenType::symbol && peek().text == "=") {
        call.keyword_names.push_back(current().text);
        advance();
        advance();
        call.keyword_values.push_back(parse_expression());
      } else {
        if (!call.keyword_names.empty()) error_at(current().offset, "a positional argument follows a keyword argument");
        call.operands.push_back(parse_expression());
      }
      if (!is_symbol(",")) break;
      advance();
    }
    expect_symbol(")");
  }

  void parse_filter_name_and_arguments(Expression& filter) {
    filter.name = expect_identifier();
    while (is_symbol(".") && !failed()) advance(), filter.name += "." + expect_identifier();
    if (is_symbol("(")) parse_call_arguments(filter);
  }

  // `| filter(args)` and `is [not] test args` after a value; a null `value` starts a filter chain
  // with no subject (filter blocks and set blocks).
  ExpressionPtr parse_filters(ExpressionPtr value) {
    while (!failed()) {
      if (is_symbol("|")) {
        ExpressionPtr filter = node(ExpressionType::filter, current().offset);
        advance();
        filter->operands.push_back(std::move(value));
        parse_filter_name_and_arguments(*filter);
        value = std::move(filter);
      } else if (is_name("is") && value) {
        const std::size_t offset = current().offset;
        advance();
        bool negated = false;
        if (is_name("not")) negated = true, advance();
        ExpressionPtr test = node(ExpressionType::test, offset);
        test->operands.push_back(std::move(value));
        test->name = expect_identifier();
        if (is_symbol("(")) {
          parse_call_arguments(*test);
        } else if ((current().type == TokenType::name || current().type == TokenType::string || current().type == TokenType::integer ||
                    current().type == TokenType::floating || is_symbol("[") || is_symbol("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and") && !is_name("is")) {
          // `x is divisibleby 3`, `x is sameas none`: one argument without parentheses.
          test->operands.push_back(parse_postfix(parse_primary()));
        }
        value = std::move(test);
        if (negated) {
          ExpressionPtr negation = node(ExpressionType::logical_not, offset);
          negation->operands.push_back(std::move(value));
          value = std::move(negation);
        }
      } else if (is_symbol("(") && value) {
        ExpressionPtr call = node(ExpressionType::call, current().offset);
        call->operands.push_back(std::move(value));
        parse_call_arguments(*call);
        value = std::move(call);
      } else {
        break;
      }
    }
    return value;
  }

  const std::string& source_;
  std::vector<Token> tokens_;
  const ChatTemplateLimits& limits_;
  std::size_t position_ = 0;
  std::size_t depth_ = 0;
  int loop_depth_ = 0;
  std::string error_;
};

// markupsafe.escape: the five characters HTML gives meaning to.
inline std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Interpreter
// ---------------------------------------------------------------------------------------------

// Variables of one level: the render's variables at the root, then one per for loop and macro
// call (Jinja2's scoping: `set` inside a loop stays in the loop; `if` opens no scope).
struct Scope {
  std::vector<std::pair<std::string, Value>> variables;
  std::shared_ptr<Scope> parent;

  const Value* find(const std::string& name) const {
    for (const Scope* scope = this; scope != nullptr; scope = scope->parent.get())
      for (const auto& variable : scope->variables)
        if (variable.first == name) return &variable.second;
    return nullptr;
  }
  void set(const std::string& name, Value value) {
    for (auto& variable : variables)
      if (variable.first == name) {
        variable.second = std::move(value);
        return;
      }
    variables.emplace_back(name, std::move(value));
  }
};

// The arguments of a call: positional, then keyword, as the template wrote them.
struct Arguments {
  static constexpr std::size_t keyword_only = static_cast<std::size_t>(-1);  // an index no positional argument has

  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keywords;

  // The argument at `index` or named `name`; `fallback` when neither was given.
  Value get(std::size_t index, const char* name, Value fallback = Value()) const {
    for (const auto& keyword : keywords)
      if (keyword.first == name) return keyword.second;
    if (index < positional.size()) return positional[index];
    return fallback;
  }
  bool has(std::size_t index, const char* name) const {
    for (const auto& keyword : keywords)
      if (keyword.first == name) return true;
    return index < positional.size();
  }
};

// Text being built (the output, a macro's output, a concatenation) with the runs of its bytes
// that came from untrusted strings: sorted, not overlapping, adjacent runs merged.
struct TrackedText {
  std::string text;
  std::vector<TextRange> untrusted_runs;

  void mark_untrusted(std::size_t begin, std::size_t end) {
    if (begin >= end) return;
    if (!untrusted_runs.empty() && untrusted_runs.back().end >= begin) untrusted_runs.back().end = end;
    else untrusted_runs.push_back(TextRange{begin, end});
  }
  void append(const std::string& piece, bool trusted) {
    const std::size_t at = text.size();
    text += piece;
    if (!trusted) mark_untrusted(at, text.size());
  }
  // A string value, keeping the provenance of each of its bytes.
  void append_string(const Value& string) {
    const Object& object = *string.object;
    if (object.origin != Origin::mixed) return append(object.text, object.origin == Origin::template_text);
    const std::size_t at = text.size();
    text += object.text;
    for (const TextRange& run : object.untrusted_runs) mark_untrusted(at + run.begin, at + run.end);
  }
  // The byte ranges not in an untrusted run: what the template wrote.
  std::vector<TextRange> trusted_ranges() const {
    std::vector<TextRange> ranges;
    std::size_t at = 0;
    for (const TextRange& run : untrusted_runs) {
      if (run.begin > at) ranges.push_back(TextRange{at, run.begin});
      at = run.end;
    }
    if (at < text.size()) ranges.push_back(TextRange{at, text.size()});
    return ranges;
  }
};

// One render. Errors are sticky instead of thrown: fail() records the first one, and every
// evaluation returns early (an Undefined) once failed() is true; locate() prefixes the position of
// the innermost node that was running.
struct Interpreter {
  Interpreter(const std::string& source, const ChatTemplateLimits& limits, const std::tm& now) : source(source), limits(limits), now(now) {}

  const std::string& source;
  const ChatTemplateLimits& limits;
  std::tm now;
  std::string error;
  bool error_positioned = false;
  std::size_t steps = 0;
  std::size_t depth = 0;
  enum class Flow { normal, break_loop, continue_loop } flow = Flow::normal;

  bool failed() const { return !error.empty(); }
  Value fail(std::string message) {
    if (error.empty()) error = std::move(message);
    return Value();
  }
  // Counts work; false (with an error) once past the limit.
  bool charge(std::size_t cost = 1) {
    steps += cost;
    if (steps <= limits.max_steps) return true;
    fail("the template took more than " + std::to_string(limits.max_steps) + " steps (an endless loop?)");
    return false;
  }
  // The inputs of the operation running now (a filter, a method, a slice ...): a string it
  // computes is trusted only when they hold only trusted strings. They are looked at when the
  // operation makes its first string (`messages | length` looks at nothing). Outside any
  // operation a computed string counts as untrusted.
  struct InputTrust {
    enum class State : std::uint8_t { unknown, trusted, untrusted };
    Interpreter& interpreter;
    InputTrust* previous;
    const Value* values[2] = {nullptr, nullptr};
    const Arguments* arguments;
    State state = State::unknown;

    // The interpreter points at this guard only while it lives (the destructor puts the previous
    // one back); GCC 12+ at -O2 cannot see that and warns of a dangling pointer.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#  pragma GCC diagnostic push
#  pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
    InputTrust(Interpreter& i, const Value* first, const Value* second = nullptr, const Arguments* call_arguments = nullptr)
        : interpreter(i), previous(i.input_trust), arguments(call_arguments) {
      values[0] = first;
      values[1] = second;
      i.input_trust = this;
    }
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#  pragma GCC diagnostic pop
#endif
    ~InputTrust() { interpreter.input_trust = previous; }
    InputTrust(const InputTrust&) = delete;
    InputTrust& operator=(const InputTrust&) = delete;

    bool trusted() {
      if (state != State::unknown) return state == State::trusted;
      std::size_t budget = scan_budget;
      const std::size_t depth = interpreter.limits.max_depth;
      bool untrusted = false;
      for (const Value* value : values) untrusted = untrusted || (value != nullptr && interpreter.holds_untrusted(*value, budget, depth));
      if (arguments != nullptr) {
        for (const Value& value : arguments->positional) untrusted = untrusted || interpreter.holds_untrusted(value, budget, depth);
        for (const auto& keyword : arguments->keywords) untrusted = untrusted || interpreter.holds_untrusted(keyword.second, budget, depth);
      }
      state = untrusted ? State::untrusted : State::trusted;
      return !untrusted;
    }
  };
  InputTrust* input_trust = nullptr;  // the innermost operation running
  // Values looked at per operation before giving up and calling its inputs untrusted: bounds the
  // cost of `messages | length` in a loop over a long chat.
  static constexpr std::size_t scan_budget = 4096;

  // Whether `v` holds a string (anywhere inside) not wholly from the template. Past the budget or
  // the depth: yes (the conservative answer).
  bool holds_untrusted(const Value& v, std::size_t& budget, std::size_t depth_left) const {
    if (!v.object || v.kind == Kind::undefined) return false;  // Undefined prints as nothing
    if (budget == 0 || depth_left == 0) return true;
    --budget;
    if (v.kind == Kind::string) return v.object->origin != Origin::template_text;
    for (const Value& item : v.object->items)
      if (holds_untrusted(item, budget, depth_left - 1)) return true;
    for (const auto& entry : v.object->entries)
      if (holds_untrusted(entry.first, budget, depth_left - 1) || holds_untrusted(entry.second, budget, depth_left - 1)) return true;
    return false;
  }
  bool holds_untrusted(const Value& v) const {
    std::size_t budget = scan_budget;
    return holds_untrusted(v, budget, limits.max_depth);
  }

  // A string computed by the operation running now: trusted when its inputs were.
  Value computed_string(std::string text) {
    Value v = Value::from_string(std::move(text));
    if (input_trust != nullptr && input_trust->trusted()) v.object->origin = Origin::template_text;
    return v;
  }
  // Every string the template builds passes here: bounded in size, and charged for its bytes.
  Value make_string(std::string text) {
    if (!string_fits(text.size())) return Value();
    return computed_string(std::move(text));
  }
  bool string_fits(std::size_t size) {
    if (size > limits.max_output_bytes) return fail("a string grew past " + std::to_string(limits.max_output_bytes) + " bytes"), false;
    return charge(1 + size / 16);
  }
  // A string from tracked text (a concatenation, a macro's output), keeping each byte's provenance.
  Value make_tracked_string(TrackedText tracked) {
    if (!string_fits(tracked.text.size())) return Value();
    const std::size_t size = tracked.text.size();
    Value v = Value::from_string(std::move(tracked.text));
    if (tracked.untrusted_runs.empty() || size == 0) {
      v.object->origin = Origin::template_text;
    } else if (tracked.untrusted_runs.size() == 1 && tracked.untrusted_runs[0].begin == 0 && tracked.untrusted_runs[0].end == size) {
      v.object->origin = Origin::variables;
    } else {
      v.object->origin = Origin::mixed;
      v.object->untrusted_runs = std::move(tracked.untrusted_runs);
    }
    return v;
  }
  // str(v) appended to `out`: a string keeps its provenance; anything else printed is trusted
  // unless it holds an untrusted string (a list printed with its elements).
  void append_text(TrackedText& out, const Value& v) {
    if (v.kind == Kind::string) return out.append_string(v);
    out.append(to_text(v), !holds_untrusted(v));
  }
  bool check_list_size(std::size_t size) {
    if (size > limits.max_output_bytes / 16) return fail("a list grew past " + std::to_string(limits.max_output_bytes / 16) + " items"), false;
    return charge(1 + size / 16);
  }
  void locate(std::size_t offset) {
    if (failed() && !error_positioned) {
      error = describe_position(source, offset) + ": " + error;
      error_positioned = true;
    }
  }

  struct DepthGuard {
    Interpreter& interpreter;
    bool ok;
    explicit DepthGuard(Interpreter& i) : interpreter(i), ok(++i.depth <= i.limits.max_depth) {
      if (!ok) i.fail("nested more than " + std::to_string(i.limits.max_depth) + " levels deep (endless recursion?)");
    }
    ~DepthGuard() { --interpreter.depth; }
  };

  std::string to_text(const Value& v) {
    if (v.kind == Kind::string) return v.text();
    std::string out;
    if (!append_python_text(out, v, false, limits.max_depth, limits.max_output_bytes)) fail("the value is nested too deeply or too large to print");
    return out;
  }
  std::string to_repr(const Value& v) {
    std::string out;
    if (!append_python_text(out, v, true, limits.max_depth, limits.max_output_bytes)) fail("the value is nested too deeply or too large to print");
    return out;
  }

  Value undefined_error(const Value& v) {
    if (v.object && v.object->unsafe) return fail(v.text());
    return fail("'" + (v.object ? v.text() : std::string("value")) + "' is undefined");
  }
  Value unsafe_attribute(const Value& object, const std::string& name) {
    Value refused = Value::undefined("access to attribute '" + name + "' of '" + type_name(object) + "' object is unsafe");
    refused.object->unsafe = true;
    return refused;
  }

  // --- attribute and item access, Jinja2's rules: `a.b` tries the attribute (a method) then the
  // item, `a[b]` the item then the attribute; a failed lookup gives Undefined, except on Undefined.

  Value get_attribute(const Value& object, const std::string& name) {
    if (object.is_undefined()) return undefined_error(object);
    Value method = bound_method(object, name);
    if (method.kind == Kind::callable) return method;
    if (object.is_mapping()) {
      for (const auto& entry : object.entries())
        if (entry.first.is_string() && entry.first.text() == name) return entry.second;
    }
    return Value::undefined(name);
  }

  Value get_item(const Value& object, const Value& key) {
    if (object.is_undefined()) return undefined_error(object);
    if (object.kind == Kind::dict) {
      for (const auto& entry : object.entries())
        if (python_equal(entry.first, key)) return entry.second;
    } else if ((object.is_sequence() || object.is_string()) && (key.kind == Kind::integer || key.kind == Kind::boolean)) {
      const std::int64_t raw = key.kind == Kind::boolean ? key.boolean : key.integer;
      if (object.is_sequence()) {
        const std::int64_t size = static_cast<std::int64_t>(object.items().size());
        const std::int64_t index = raw < 0 ? raw + size : raw;
        if (index >= 0 && index < size) return object.items()[static_cast<std::size_t>(index)];
        return Value::undefined(std::to_string(raw));
      }
      const std::vector<std::size_t> offsets = code_point_offsets(object.text());
      const std::int64_t size = static_cast<std::int64_t>(offsets.size() - 1);
      const std::int64_t index = raw < 0 ? raw + size : raw;
      if (index >= 0 && index < size) {
        const std::size_t at = offsets[static_cast<std::size_t>(index)];
        InputTrust trust(*this, &object);
        return make_string(object.text().substr(at, offsets[static_cast<std::size_t>(index) + 1] - at));
      }
      return Value::undefined(std::to_string(raw));
    }
    if (key.is_string()) return get_attribute(object, key.text());
    return Value::undefined(to_repr(key));
  }

  // Python slicing [start:stop:step] of a list, tuple or string.
  Value slice(const Value& object, const Value& start_value, const Value& stop_value, const Value& step_value) {
    if (object.is_undefined()) return undefined_error(object);
    auto as_index = [&](const Value& v, bool& given) -> std::int64_t {
      given = !(v.is_undefined() || v.kind == Kind::none);
      if (!given) return 0;
      if (v.kind == Kind::integer) return v.integer;
      if (v.kind == Kind::boolean) return v.boolean;
      fail("slice indices must be integers or None");
      return 0;
    };
    bool has_start = false, has_stop = false, has_step = false;
    const std::int64_t start_raw = as_index(start_value, has_start);
    const std::int64_t stop_raw = as_index(stop_value, has_stop);
    const std::int64_t step_raw = as_index(step_value, has_step);
    if (failed()) return Value();
    const std::int64_t stride = has_step ? step_raw : 1;
    if (stride == 0) return fail("slice step cannot be zero");
    std::vector<std::size_t> offsets;
    std::int64_t size;
    if (object.is_sequence()) size = static_cast<std::int64_t>(object.items().size());
    else if (object.is_string()) offsets = code_point_offsets(object.text()), size = static_cast<std::int64_t>(offsets.size() - 1);
    else return fail(std::string("'") + type_name(object) + "' object is not subscriptable");
    // Python's PySlice_AdjustIndices.
    auto adjust = [&](bool given, std::int64_t raw, std::int64_t fallback) {
      if (!given) return fallback;
      if (raw < 0) raw += size;
      if (raw < 0) return stride < 0 ? std::int64_t{-1} : std::int64_t{0};
      if (raw >= size) return stride < 0 ? size - 1 : size;
      return raw;
    };
    const std::int64_t begin = adjust(has_start, start_raw, stride < 0 ? size - 1 : 0);
    const std::int64_t end = adjust(has_stop, stop_raw, stride < 0 ? -1 : size);
    std::vector<std::int64_t> picked;
    for (std::int64_t i = begin; stride > 0 ? i < end : i > end; i += stride) picked.push_back(i);
    if (object.is_sequence()) {
      Value result = Value::new_list(object.kind);
      if (!check_list_size(picked.size())) return Value();
      for (std::int64_t i : picked) result.items().push_back(object.items()[static_cast<std::size_t>(i)]);
      return result;
    }
    std::string text;
    for (std::int64_t i : picked) {
      const std::size_t at = offsets[static_cast<std::size_t>(i)];
      text.append(object.text(), at, offsets[static_cast<std::size_t>(i) + 1] - at);
    }
    InputTrust trust(*this, &object);
    return make_string(std::move(text));
  }

  // Python iteration: list and tuple items, dict keys, string characters; Undefined is empty.
  bool iterate(const Value& v, std::vector<Value>& out) {
    switch (v.kind) {
      case Kind::undefined: return true;
      case Kind::list:
      case Kind::tuple: out = v.items(); return true;
      case Kind::iterator:  // consumed: a second loop over the same generator sees nothing
        out = std::move(v.items());
        v.items().clear();
        return true;
      case Kind::dict:
        for (const auto& entry : v.entries()) out.push_back(entry.first);
        return true;
      case Kind::string: {
        const std::vector<std::size_t> offsets = code_point_offsets(v.text());
        InputTrust trust(*this, &v);
        for (std::size_t i = 0; i + 1 < offsets.size(); ++i) out.push_back(computed_string(v.text().substr(offsets[i], offsets[i + 1] - offsets[i])));
        return charge(out.size());
      }
      default: fail(std::string("'") + type_name(v) + "' object is not iterable"); return false;
    }
  }

  // --- Python operators ---

  static bool is_int_like(const Value& v) { return v.kind == Kind::integer || v.kind == Kind::boolean; }
  static std::int64_t as_int(const Value& v) { return v.kind == Kind::boolean ? v.boolean : v.integer; }
  static double as_double(const Value& v) { return v.kind == Kind::floating ? v.floating : static_cast<double>(as_int(v)); }

  Value operand_error(const char* op, const Value& a, const Value& b) {
    if (a.is_undefined()) return undefined_error(a);
    if (b.is_undefined()) return undefined_error(b);
    return fail(std::string("unsupported operand type(s) for ") + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
  }

  Value repeat(const Value& sequence, std::int64_t times) {
    if (times < 0) times = 0;
    if (sequence.is_string()) {
      const std::uint64_t total = static_cast<std::uint64_t>(sequence.text().size()) * static_cast<std::uint64_t>(times);
      if (times > 0 && (total / static_cast<std::uint64_t>(times) != sequence.text().size() || total > limits.max_output_bytes))
        return fail("a string grew past " + std::to_string(limits.max_output_bytes) + " bytes");
      std::string text;
      text.reserve(static_cast<std::size_t>(total));
      for (std::int64_t i = 0; i < times; ++i) text += sequence.text();
      return make_string(std::move(text));
    }
    const std::uint64_t total = static_cast<std::uint64_t>(sequence.items().size()) * static_cast<std::uint64_t>(times);
    if (times > 0 && (total / static_cast<std::uint64_t>(times) != sequence.items().size() || total > limits.max_output_bytes / 16))
      return fail("a list grew past " + std::to_string(limits.max_output_bytes / 16) + " items");
    if (!check_list_size(static_cast<std::size_t>(total))) return Value();
    Value result = Value::new_list(sequence.kind);
    for (std::int64_t i = 0; i < times; ++i) result.items().insert(result.items().end(), sequence.items().begin(), sequence.items().end());
    return result;
  }

  Value binary_operation(const std::string& op, const Value& a, const Value& b) {
    const bool numbers = a.is_number() && b.is_number();
    const bool integers = is_int_like(a) && is_int_like(b);
    constexpr std::int64_t max = std::numeric_limits<std::int64_t>::max();
    constexpr std::int64_t min = std::numeric_limits<std::int64_t>::min();
    auto overflow = [&] { return fail("integer overflow in '" + op + "' (lamina's integers are 64-bit)"); };
    // Concatenation keeps the provenance of each piece; a string computed otherwise (Markup's
    // escaping, repetition) is trusted only when both operands are.
    auto concatenate = [&]() {
      TrackedText joined;
      append_text(joined, a);
      append_text(joined, b);
      return make_tracked_string(std::move(joined));
    };
    InputTrust trust(*this, &a, &b);
    if (op == "~") return concatenate();
    if (op == "+") {
      if (integers) {
        const std::int64_t x = as_int(a), y = as_int(b);
        if ((y > 0 && x > max - y) || (y < 0 && x < min - y)) return overflow();
        return Value::from_int(x + y);
      }
      if (numbers) return Value::from_float(as_double(a) + as_double(b));
      if (a.is_string() && b.is_string()) {
        if (!a.markup && !b.markup) return concatenate();
        Value joined = make_string((a.markup ? a.text() : html_escape(a.text())) + (b.markup ? b.text() : html_escape(b.text())));
        joined.markup = true;
        return joined;
      }
      if (a.is_sequence() && a.kind == b.kind) {
        if (!check_list_size(a.items().size() + b.items().size())) return Value();
        Value result = Value::new_list(a.kind);
        result.items() = a.items();
        result.items().insert(result.items().end(), b.items().begin(), b.items().end());
        return result;
      }
      return operand_error("+", a, b);
    }
    if (op == "-") {
      if (integers) {
        const std::int64_t x = as_int(a), y = as_int(b);
        if ((y < 0 && x > max + y) || (y > 0 && x < min + y)) return overflow();
        return Value::from_int(x - y);
      }
      if (numbers) return Value::from_float(as_double(a) - as_double(b));
      return operand_error("-", a, b);
    }
    if (op == "*") {
      if (integers) {
        const std::int64_t x = as_int(a), y = as_int(b);
        if (x != 0 && y != 0) {
          const bool too_big = (x > 0) == (y > 0) ? (x > 0 ? x > max / y : x < max / y) : (x > 0 ? y < min / x : x < min / y);
          if (too_big) return overflow();
        }
        return Value::from_int(x * y);
      }
      if (numbers) return Value::from_float(as_double(a) * as_double(b));
      if ((a.is_string() || a.is_sequence()) && is_int_like(b)) return repeat(a, as_int(b));
      if ((b.is_string() || b.is_sequence()) && is_int_like(a)) return repeat(b, as_int(a));
      return operand_error("*", a, b);
    }
    if (op == "/" || op == "//" || op == "%") {
      if (!numbers) return operand_error(op.c_str(), a, b);
      if (as_double(b) == 0) return fail(op == "%" ? "integer modulo by zero" : "division by zero");
      if (op == "/") return Value::from_float(as_double(a) / as_double(b));
      if (integers) {
        const std::int64_t x = as_int(a), y = as_int(b);
        if (x == min && y == -1) return overflow();
        std::int64_t quotient = x / y, remainder = x % y;
        if (remainder != 0 && ((remainder < 0) != (y < 0))) --quotient, remainder += y;  // Python floors
        return Value::from_int(op == "//" ? quotient : remainder);
      }
      const double x = as_double(a), y = as_double(b);
      if (op == "//") return Value::from_float(std::floor(x / y));
      double remainder = std::fmod(x, y);
      if (remainder != 0 && ((remainder < 0) != (y < 0))) remainder += y;
      return Value::from_float(remainder);
    }
    if (op == "**") {
      if (integers && as_int(b) >= 0) {
        const std::int64_t base = as_int(a), exponent = as_int(b);
        if (base == 0) return Value::from_int(exponent == 0 ? 1 : 0);
        if (base == 1) return Value::from_int(1);
        if (base == -1) return Value::from_int(exponent % 2 == 0 ? 1 : -1);
        if (exponent > 63) return overflow();
        std::int64_t result = 1;
        for (std::int64_t e = 0; e < exponent; ++e) {
          if (std::abs(result) > max / std::abs(base)) return overflow();
          result *= base;
        }
        return Value::from_int(result);
      }
      if (numbers) return Value::from_float(std::pow(as_double(a), as_double(b)));
      return operand_error("**", a, b);
    }
    return fail("unknown operator '" + op + "'");
  }

  // Python <, for sorting and comparisons: numbers, strings (code point order, which UTF-8 byte
  // order keeps), sequences element by element.
  bool less(const Value& a, const Value& b) {
    if (a.is_number() && b.is_number()) {
      if (is_int_like(a) && is_int_like(b)) return as_int(a) < as_int(b);
      return as_double(a) < as_double(b);
    }
    if (a.is_string() && b.is_string()) return a.text() < b.text();
    if (a.is_sequence() && b.is_sequence()) {
      const std::size_t n = std::min(a.items().size(), b.items().size());
      for (std::size_t i = 0; i < n && !failed(); ++i) {
        if (python_equal(a.items()[i], b.items()[i])) continue;
        return less(a.items()[i], b.items()[i]);
      }
      return a.items().size() < b.items().size();
    }
    if (a.is_undefined()) return undefined_error(a), false;
    if (b.is_undefined()) return undefined_error(b), false;
    fail(std::string("'<' not supported between instances of '") + type_name(a) + "' and '" + type_name(b) + "'");
    return false;
  }

  bool contains(const Value& container, const Value& item) {
    switch (container.kind) {
      case Kind::undefined: return false;
      case Kind::string:
        if (!item.is_string()) return fail("'in <string>' requires string as left operand"), false;
        return container.text().find(item.text()) != std::string::npos;
      case Kind::list:
      case Kind::tuple:
      case Kind::iterator:
        for (const Value& element : container.items())
          if (python_equal(element, item)) return true;
        return false;
      case Kind::dict:
        for (const auto& entry : container.entries())
          if (python_equal(entry.first, item)) return true;
        return false;
      default: fail(std::string("argument of type '") + type_name(container) + "' is not iterable"); return false;
    }
  }

  bool compare(const std::string& op, const Value& a, const Value& b) {
    if (op == "==") return python_equal(a, b);
    if (op == "!=") return !python_equal(a, b);
    if (op == "<") return less(a, b);
    if (op == ">") return less(b, a);
    if (op == "<=") return !less(b, a) && !failed();
    if (op == ">=") return !less(a, b) && !failed();
    if (op == "in") return contains(b, a);
    if (op == "not in") return !contains(b, a) && !failed();
    fail("unknown comparison '" + op + "'");
    return false;
  }

  // --- evaluation ---

  Value evaluate(const Expression* e, const std::shared_ptr<Scope>& scope) {
    if (e == nullptr || failed() || !charge()) return Value();
    DepthGuard guard(*this);
    if (!guard.ok) return Value();
    Value result = evaluate_node(*e, scope);
    locate(e->offset);
    return result;
  }

  Value evaluate_node(const Expression& e, const std::shared_ptr<Scope>& scope) {
    switch (e.type) {
      case ExpressionType::literal: return e.literal;
      case ExpressionType::name: {
        if (const Value* found = scope->find(e.name)) return *found;
        return global_function(e.name);
      }
      case ExpressionType::list:
      case ExpressionType::tuple: {
        Value list = Value::new_list(e.type == ExpressionType::list ? Kind::list : Kind::tuple);
        for (const ExpressionPtr& item : e.operands) list.items().push_back(evaluate(item.get(), scope));
        return list;
      }
      case ExpressionType::dict: {
        Value dict = Value::new_dict();
        for (std::size_t i = 0; i + 1 < e.operands.size(); i += 2) {
          Value key = evaluate(e.operands[i].get(), scope);
          Value value = evaluate(e.operands[i + 1].get(), scope);
          set_entry(dict, std::move(key), std::move(value));
        }
        return dict;
      }
      case ExpressionType::attribute: {
        Value object = evaluate(e.operands[0].get(), scope);
        if (failed()) return Value();
        return get_attribute(object, e.name);
      }
      case ExpressionType::subscript: {
        Value object = evaluate(e.operands[0].get(), scope);
        const Expression& key = *e.operands[1];
        if (key.type == ExpressionType::slice) {
          Value start = evaluate(key.operands[0].get(), scope), stop = evaluate(key.operands[1].get(), scope), step = evaluate(key.operands[2].get(), scope);
          if (failed()) return Value();
          return slice(object, start, stop, step);
        }
        Value index = evaluate(&key, scope);
        if (failed()) return Value();
        return get_item(object, index);
      }
      case ExpressionType::slice: return fail("a slice outside of [ ]");
      case ExpressionType::call: {
        Value callee = evaluate(e.operands[0].get(), scope);
        Arguments arguments = evaluate_arguments(e, 1, scope);
        if (failed()) return Value();
        return call(callee, arguments, Value());
      }
      case ExpressionType::filter: {
        Value subject = evaluate(e.operands[0].get(), scope);
        if (failed()) return Value();
        return apply_filter(e, std::move(subject), scope);
      }
      case ExpressionType::test: {
        Value subject = evaluate(e.operands[0].get(), scope);
        Arguments arguments = evaluate_arguments(e, 1, scope);
        if (failed()) return Value();
        return Value::from_bool(apply_test(e.name, subject, arguments));
      }
      case ExpressionType::negate:
      case ExpressionType::unary_plus: {
        Value v = evaluate(e.operands[0].get(), scope);
        if (failed()) return Value();
        if (v.kind == Kind::floating) return Value::from_float(e.type == ExpressionType::negate ? -v.floating : v.floating);
        if (is_int_like(v)) {
          if (e.type == ExpressionType::negate && as_int(v) == std::numeric_limits<std::int64_t>::min()) return fail("integer overflow");
          return Value::from_int(e.type == ExpressionType::negate ? -as_int(v) : as_int(v));
        }
        if (v.is_undefined()) return undefined_error(v);
        return fail(std::string("bad operand type for unary ") + (e.type == ExpressionType::negate ? "-" : "+") + ": '" + type_name(v) + "'");
      }
      case ExpressionType::logical_not: {
        Value v = evaluate(e.operands[0].get(), scope);
        return Value::from_bool(!truthy(v));
      }
      case ExpressionType::logical_and:
      case ExpressionType::logical_or: {
        Value left = evaluate(e.operands[0].get(), scope);
        if (failed()) return Value();
        if (truthy(left) == (e.type == ExpressionType::logical_or)) return left;  // Python returns the deciding operand
        return evaluate(e.operands[1].get(), scope);
      }
      case ExpressionType::binary: {
        Value left = evaluate(e.operands[0].get(), scope);
        Value right = evaluate(e.operands[1].get(), scope);
        if (failed()) return Value();
        return binary_operation(e.name, left, right);
      }
      case ExpressionType::compare: {
        Value left = evaluate(e.operands[0].get(), scope);
        for (std::size_t i = 0; i < e.operators.size() && !failed(); ++i) {
          Value right = evaluate(e.operands[i + 1].get(), scope);
          if (failed()) return Value();
          if (!compare(e.operators[i], left, right)) return Value::from_bool(false);
          left = std::move(right);
        }
        if (failed()) return Value();
        return Value::from_bool(true);
      }
      case ExpressionType::conditional: {
        Value condition = evaluate(e.operands[1].get(), scope);
        if (failed()) return Value();
        if (truthy(condition)) return evaluate(e.operands[0].get(), scope);
        if (e.operands[2]) return evaluate(e.operands[2].get(), scope);
        return Value::undefined("conditional expression");
      }
    }
    return Value();
  }

  Arguments evaluate_arguments(const Expression& e, std::size_t first, const std::shared_ptr<Scope>& scope) {
    Arguments arguments;
    for (std::size_t i = first; i < e.operands.size(); ++i) arguments.positional.push_back(evaluate(e.operands[i].get(), scope));
    for (std::size_t i = 0; i < e.keyword_names.size(); ++i) arguments.keywords.emplace_back(e.keyword_names[i], evaluate(e.keyword_values[i].get(), scope));
    return arguments;
  }

  void set_entry(const Value& dict, Value key, Value value) {
    for (auto& entry : dict.entries())
      if (python_equal(entry.first, key)) {
        entry.second = std::move(value);
        return;
      }
    dict.entries().emplace_back(std::move(key), std::move(value));
  }

  // --- calls ---

  Value call(const Value& callee, Arguments& arguments, const Value& caller) {
    if (callee.is_undefined()) return undefined_error(callee);
    if (callee.kind != Kind::callable) return fail(std::string("'") + type_name(callee) + "' object is not callable");
    if (callee.object->macro == nullptr) {
      // A bound method keeps its value in items (see bound_method): `text.strip()` reads it.
      InputTrust trust(*this, &callee, nullptr, &arguments);
      return callee.object->builtin(*this, arguments);
    }
    return call_macro(callee, arguments, caller);
  }

  Value call_macro(const Value& callee, Arguments& arguments, const Value& caller) {
    DepthGuard guard(*this);
    if (!guard.ok) return Value();
    const MacroDefinition& macro = *callee.object->macro;
    std::shared_ptr<Scope> scope = std::make_shared<Scope>();
    scope->parent = callee.object->closure.lock();
    // Only a macro stored in a namespace and called after its loop iteration ended gets here.
    if (!scope->parent) return fail("macro '" + macro.name + "' was called after the loop or macro that defined it ended");
    Value varargs = Value::new_list(Kind::tuple);
    Value kwargs = Value::new_dict();
    for (std::size_t i = 0; i < arguments.positional.size(); ++i) {
      if (i < macro.parameters.size()) scope->set(macro.parameters[i], arguments.positional[i]);
      else varargs.items().push_back(arguments.positional[i]);
    }
    for (const auto& keyword : arguments.keywords) {
      if (std::find(macro.parameters.begin(), macro.parameters.end(), keyword.first) != macro.parameters.end()) scope->set(keyword.first, keyword.second);
      else kwargs.entries().emplace_back(Value::from_template(keyword.first), keyword.second);
    }
    // Parameters not passed: their default, evaluated now in the macro's scope, or Undefined.
    for (std::size_t i = 0; i < macro.parameters.size(); ++i) {
      bool given = false;
      for (const auto& variable : scope->variables) given = given || variable.first == macro.parameters[i];
      if (given) continue;
      scope->set(macro.parameters[i], macro.defaults[i] ? evaluate(macro.defaults[i].get(), scope) : Value::undefined(macro.parameters[i]));
    }
    scope->set("varargs", varargs);
    scope->set("kwargs", kwargs);
    if (caller.kind == Kind::callable) scope->set("caller", caller);
    TrackedText out;
    // The body's operations are not the caller's: they judge their own inputs.
    InputTrust* const calling_operation = input_trust;
    input_trust = nullptr;
    execute(macro.body, scope, out);
    input_trust = calling_operation;
    flow = Flow::normal;
    if (failed()) return Value();
    return make_tracked_string(std::move(out));
  }

  Value global_function(const std::string& name);
  Value bound_method(const Value& object, const std::string& name);
  Value apply_filter(const Expression& filter, Value subject, const std::shared_ptr<Scope>& scope);
  Value filter_by_name(const std::string& name, const Value& subject, Arguments& arguments);
  bool apply_test(const std::string& name, const Value& subject, const Arguments& arguments);
  Value replace_text(const std::string& text, const std::string& from, const std::string& to, std::int64_t count);
  bool append_json(std::string& out, const Value& v, const Value& indent, const std::string& item_separator,
                   const std::string& key_separator, bool sort_keys, std::size_t level);

  // --- statements ---

  // The template's own text.
  void emit(TrackedText& out, const std::string& text) {
    if (!output_fits(out, text.size())) return;
    out.append(text, true);
    charge(text.size() / 16);
  }
  // What {{ }} prints, with its provenance.
  void emit_value(TrackedText& out, const Value& v) {
    if (v.kind == Kind::string) {
      if (!output_fits(out, v.text().size())) return;
      out.append_string(v);
      charge(v.text().size() / 16);
      return;
    }
    const std::string text = to_text(v);
    if (failed() || !output_fits(out, text.size())) return;
    out.append(text, !holds_untrusted(v));
    charge(text.size() / 16);
  }
  bool output_fits(const TrackedText& out, std::size_t more) {
    if (out.text.size() + more <= limits.max_output_bytes) return true;
    fail("the output grew past " + std::to_string(limits.max_output_bytes) + " bytes");
    return false;
  }

  void execute(const Body& body, const std::shared_ptr<Scope>& scope, TrackedText& out) {
    DepthGuard guard(*this);
    if (!guard.ok) return;
    for (const StatementPtr& statement : body) {
      if (failed() || flow != Flow::normal || !charge()) return;
      execute_statement(*statement, scope, out);
      locate(statement->offset);
    }
  }

  // Whether `target` is `from` or inside it (elements, entries, the value a method is bound to).
  // Charged per element visited; deeper than `depth_left` counts as reaching it (refused).
  bool reaches(const Value& from, const Object* target, std::size_t depth_left) {
    if (!from.object || from.kind == Kind::string || from.kind == Kind::undefined) return false;
    if (from.object.get() == target) return true;
    if (depth_left == 0) return fail("the value is nested more than " + std::to_string(limits.max_depth) + " levels deep"), true;
    if (!charge(1 + (from.object->items.size() + from.object->entries.size()) / 16)) return true;
    for (const Value& item : from.object->items)
      if (reaches(item, target, depth_left - 1)) return true;
    for (const auto& entry : from.object->entries)
      if (reaches(entry.first, target, depth_left - 1) || reaches(entry.second, target, depth_left - 1)) return true;
    return false;
  }

  void assign(const Expression& target, const Value& value, const std::shared_ptr<Scope>& scope) {
    if (target.type == ExpressionType::name) {
      scope->set(target.name, value);
    } else if (target.type == ExpressionType::tuple) {
      std::vector<Value> items;
      if (!iterate(value, items)) return;
      if (items.size() != target.operands.size()) {
        fail("cannot unpack " + std::to_string(items.size()) + " values into " + std::to_string(target.operands.size()) + " names");
        return;
      }
      for (std::size_t i = 0; i < items.size(); ++i) assign(*target.operands[i], items[i], scope);
    } else if (target.type == ExpressionType::attribute) {
      Value object = evaluate(target.operands[0].get(), scope);
      if (failed()) return;
      if (object.kind != Kind::namespace_object) {
        fail("cannot assign attribute on non-namespace object");
        return;
      }
      // Namespaces are the only containers a template can change (lists and dicts are immutable
      // in the sandbox), so only here can a value come to hold itself. Python's collector frees
      // such cycles; shared pointers would leak them, so lamina refuses them.
      if (reaches(value, object.object.get(), limits.max_depth)) {
        fail("a namespace cannot hold itself (ns." + target.name + ")");
        return;
      }
      set_entry(object, Value::from_template(target.name), value);
    }
  }

  void execute_statement(const Statement& s, const std::shared_ptr<Scope>& scope, TrackedText& out) {
    switch (s.type) {
      case StatementType::text: emit(out, s.text); return;
      case StatementType::output: {
        Value v = evaluate(s.expressions[0].get(), scope);
        if (!failed()) emit_value(out, v);
        return;
      }
      case StatementType::if_chain:
        for (std::size_t i = 0; i < s.expressions.size(); ++i) {
          Value condition = evaluate(s.expressions[i].get(), scope);
          if (failed()) return;
          if (truthy(condition)) return execute(s.bodies[i], scope, out);
        }
        if (s.bodies.size() > s.expressions.size()) execute(s.bodies.back(), scope, out);
        return;
      case StatementType::for_loop: return execute_for(s, scope, out);
      case StatementType::set: {
        Value v = evaluate(s.expressions[1].get(), scope);
        if (!failed()) assign(*s.expressions[0], v, scope);
        return;
      }
      case StatementType::set_block: {
        TrackedText text;
        execute(s.bodies[0], scope, text);
        if (failed()) return;
        Value v = make_tracked_string(std::move(text));
        if (s.expressions[1]) v = apply_filter(*s.expressions[1], v, scope);
        if (!failed()) assign(*s.expressions[0], v, scope);
        return;
      }
      case StatementType::macro: {
        Value macro;
        macro.kind = Kind::callable;
        macro.object = std::make_shared<Object>();
        macro.object->text = s.macro->name;
        macro.object->macro = s.macro.get();
        macro.object->closure = scope;  // a macro sees the variables where it was defined
        scope->set(s.macro->name, macro);
        return;
      }
      case StatementType::call_block: {
        Value caller;
        caller.kind = Kind::callable;
        caller.object = std::make_shared<Object>();
        caller.object->text = "caller";
        caller.object->macro = s.macro.get();
        caller.object->closure = scope;
        const Expression& call_expression = *s.expressions[0];
        Value callee = evaluate(call_expression.operands[0].get(), scope);
        Arguments arguments = evaluate_arguments(call_expression, 1, scope);
        if (failed()) return;
        Value result = callee.kind == Kind::callable && callee.object->macro ? call_macro(callee, arguments, caller) : call(callee, arguments, caller);
        if (!failed()) emit_value(out, result);
        return;
      }
      case StatementType::filter_block: {
        TrackedText text;
        execute(s.bodies[0], scope, text);
        if (failed()) return;
        Value v = apply_filter(*s.expressions[0], make_tracked_string(std::move(text)), scope);
        if (!failed()) emit_value(out, v);
        return;
      }
      case StatementType::break_loop: flow = Flow::break_loop; return;
      case StatementType::continue_loop: flow = Flow::continue_loop; return;
      case StatementType::body: execute(s.bodies[0], scope, out); return;
    }
  }

  void execute_for(const Statement& s, const std::shared_ptr<Scope>& scope, TrackedText& out) {
    Value iterable = evaluate(s.expressions[1].get(), scope);
    if (failed()) return;
    std::vector<Value> all;
    if (!iterate(iterable, all)) return;
    std::shared_ptr<Scope> filter_scope = std::make_shared<Scope>();
    filter_scope->parent = scope;
    // `for x in y if cond`: the condition filters first, so loop.length and loop.last count only
    // the items kept.
    std::vector<Value> items;
    if (s.expressions[2]) {
      for (const Value& item : all) {
        assign(*s.expressions[0], item, filter_scope);
        Value keep = evaluate(s.expressions[2].get(), filter_scope);
        if (failed()) return;
        if (truthy(keep)) items.push_back(item);
      }
    } else {
      items = std::move(all);
    }
    const std::size_t length = items.size();
    // One `loop` object for the whole loop, updated in place each iteration, as Jinja2's
    // LoopContext is: no allocation per iteration beyond the template's own.
    Value loop = Value::new_dict();
    static const char* const loop_keys[] = {"index", "index0", "revindex", "revindex0", "first", "last", "length", "depth", "depth0", "previtem", "nextitem", "cycle"};
    for (const char* key : loop_keys) loop.entries().emplace_back(Value::from_template(key), Value());
    auto cycle_position = std::make_shared<std::size_t>(0);
    loop.entries()[11].second = Value::from_builtin("cycle", [cycle_position](Interpreter& interpreter, Arguments& arguments) {
      if (arguments.positional.empty()) return interpreter.fail("no items for cycling given");
      return arguments.positional[*cycle_position % arguments.positional.size()];
    });
    const Value no_item = Value::undefined("there is no previous or next item");
    std::shared_ptr<Scope> iteration_scope = std::make_shared<Scope>();
    iteration_scope->parent = scope;
    for (std::size_t i = 0; i < length; ++i) {
      if (failed() || !charge()) return;
      // Each iteration starts from fresh variables: a `set` in one is gone in the next, as in
      // Jinja2. (Clearing keeps the vector's storage: no allocation per iteration.)
      iteration_scope->variables.clear();
      iteration_scope->set("loop", loop);
      const std::int64_t index = static_cast<std::int64_t>(i), size = static_cast<std::int64_t>(length);
      std::vector<std::pair<Value, Value>>& fields = loop.entries();
      fields[0].second = Value::from_int(index + 1);
      fields[1].second = Value::from_int(index);
      fields[2].second = Value::from_int(size - index);
      fields[3].second = Value::from_int(size - index - 1);
      fields[4].second = Value::from_bool(i == 0);
      fields[5].second = Value::from_bool(i + 1 == length);
      fields[6].second = Value::from_int(size);
      fields[7].second = Value::from_int(1);
      fields[8].second = Value::from_int(0);
      fields[9].second = i > 0 ? items[i - 1] : no_item;
      fields[10].second = i + 1 < length ? items[i + 1] : no_item;
      *cycle_position = i;
      assign(*s.expressions[0], items[i], iteration_scope);
      if (failed()) return;
      execute(s.bodies[0], iteration_scope, out);
      if (flow == Flow::break_loop) {
        flow = Flow::normal;
        break;
      }
      flow = Flow::normal;
    }
    if (length == 0 && !failed()) execute(s.bodies[1], scope, out);
  }
};

// ---------------------------------------------------------------------------------------------
// Builtins: global functions, methods of str/dict/list, filters, tests, tojson
// ---------------------------------------------------------------------------------------------

// Case mapping of one code point for the scripts chat text mostly uses: ASCII, Latin-1, the
// basic Greek and Cyrillic alphabets. Python maps all of Unicode (and some letters to two, as
// "ß".upper() == "SS"); the rest is left as it is.
inline std::uint32_t simple_case(std::uint32_t cp, bool to_upper) {
  if (to_upper) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 0xE0 && cp <= 0xFE && cp != 0xF7) || (cp >= 0x3B1 && cp <= 0x3C9 && cp != 0x3C2) || (cp >= 0x430 && cp <= 0x44F)) return cp - 0x20;
    if (cp == 0xFF) return 0x178;
    if (cp == 0x3C2) return 0x3A3;  // final sigma
    if (cp >= 0x450 && cp <= 0x45F) return cp - 0x50;
  } else {
    if ((cp >= 'A' && cp <= 'Z') || (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) || (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) || (cp >= 0x410 && cp <= 0x42F)) return cp + 0x20;
    if (cp == 0x178) return 0xFF;
    if (cp >= 0x400 && cp <= 0x40F) return cp + 0x50;
  }
  return cp;
}

inline std::string change_case(const std::string& s, bool to_upper) {
  std::string out;
  out.reserve(s.size());
  const std::vector<std::size_t> offsets = code_point_offsets(s);
  for (std::size_t i = 0; i + 1 < offsets.size(); ++i) {
    if (offsets[i + 1] - offsets[i] == 1 && static_cast<unsigned char>(s[offsets[i]]) >= 0x80) {
      out += s[offsets[i]];  // an invalid byte stays as it is
      continue;
    }
    append_utf8(out, simple_case(decode_code_point(s, offsets[i], offsets[i + 1]), to_upper));
  }
  return out;
}
inline std::string text_lower(const std::string& s) { return change_case(s, false); }
inline std::string text_upper(const std::string& s) { return change_case(s, true); }
inline bool ascii_alpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }

// str.title(): a letter after a non-letter starts a word.
inline std::string python_title(const std::string& s) {
  std::string out = s;
  bool previous_is_letter = false;
  for (char& c : out) {
    const bool letter = ascii_alpha(c) || static_cast<unsigned char>(c) >= 0x80;
    if (ascii_alpha(c)) c = static_cast<char>(previous_is_letter ? std::tolower(static_cast<unsigned char>(c)) : std::toupper(static_cast<unsigned char>(c)));
    previous_is_letter = letter;
  }
  return out;
}

inline std::string python_capitalize(const std::string& s) {
  std::string out = text_lower(s);
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

// str.split(separator, maxsplit): no separator splits on runs of whitespace and drops empty parts.
inline std::vector<std::string> python_split(const std::string& s, const std::string* separator, std::int64_t max_splits) {
  std::vector<std::string> parts;
  if (separator != nullptr) {
    std::size_t start = 0;
    while (max_splits < 0 || static_cast<std::int64_t>(parts.size()) < max_splits) {
      const std::size_t found = s.find(*separator, start);
      if (found == std::string::npos) break;
      parts.push_back(s.substr(start, found - start));
      start = found + separator->size();
    }
    parts.push_back(s.substr(start));
    return parts;
  }
  const std::vector<std::size_t> offsets = code_point_offsets(s);
  auto space_at = [&](std::size_t i) { return is_python_space(decode_code_point(s, offsets[i], offsets[i + 1])); };
  std::size_t i = 0;
  const std::size_t n = offsets.size() - 1;
  while (i < n) {
    while (i < n && space_at(i)) ++i;
    if (i == n) break;
    if (max_splits >= 0 && static_cast<std::int64_t>(parts.size()) == max_splits) {
      std::size_t end = n;
      while (end > i && space_at(end - 1)) --end;
      parts.push_back(s.substr(offsets[i], offsets[end] - offsets[i]));
      break;
    }
    std::size_t j = i;
    while (j < n && !space_at(j)) ++j;
    parts.push_back(s.substr(offsets[i], offsets[j] - offsets[i]));
    i = j;
  }
  return parts;
}

inline Value Interpreter::global_function(const std::string& name) {
  if (name == "raise_exception") {
    return Value::from_builtin(name, [](Interpreter& interpreter, Arguments& arguments) {
      return interpreter.fail(interpreter.to_text(arguments.get(0, "message")));
    });
  }
  if (name == "strftime_now") {
    return Value::from_builtin(name, [](Interpreter& interpreter, Arguments& arguments) {
      const Value format = arguments.get(0, "format");
      if (!format.is_string()) return interpreter.fail("strftime_now() needs a format string");
      if (format.text().size() > 1024) return interpreter.fail("strftime_now(): the format is longer than 1024 bytes");
      // strftime writes nothing and returns 0 when the buffer is too small; each conversion gives
      // at most a few dozen bytes, so 64 per format byte always suffices.
      std::string buffer(64 * format.text().size() + 64, '\0');
      const std::size_t written = std::strftime(&buffer[0], buffer.size(), format.text().c_str(), &interpreter.now);
      buffer.resize(written);
      return interpreter.make_string(std::move(buffer));
    });
  }
  if (name == "range") {
    return Value::from_builtin(name, [](Interpreter& interpreter, Arguments& arguments) {
      std::int64_t start = 0, stop = 0, step = 1;
      for (const Value& v : arguments.positional)
        if (!is_int_like(v)) return interpreter.fail(std::string("range() takes integers, not '") + type_name(v) + "'");
      if (arguments.positional.size() == 1) stop = as_int(arguments.positional[0]);
      else if (arguments.positional.size() >= 2) start = as_int(arguments.positional[0]), stop = as_int(arguments.positional[1]);
      if (arguments.positional.size() >= 3) step = as_int(arguments.positional[2]);
      if (arguments.positional.empty() || arguments.positional.size() > 3) return interpreter.fail("range() takes 1 to 3 arguments");
      if (step == 0) return interpreter.fail("range() arg 3 must not be zero");
      const double count = std::ceil((static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(step));
      // Jinja2's sandbox refuses ranges of more than 100,000 items (MAX_RANGE).
      if (count > 100000) return interpreter.fail("range too big, the sandbox allows at most 100000 items");
      Value list = Value::new_list();
      if (!interpreter.check_list_size(count > 0 ? static_cast<std::size_t>(count) : 0)) return Value();
      for (std::int64_t i = start; step > 0 ? i < stop : i > stop; i += step) list.items().push_back(Value::from_int(i));
      return list;
    });
  }
  if (name == "namespace" || name == "dict") {
    const bool is_namespace = name == "namespace";
    return Value::from_builtin(name, [is_namespace](Interpreter& interpreter, Arguments& arguments) {
      Value result = Value::new_dict(is_namespace ? Kind::namespace_object : Kind::dict);
      for (const Value& source : arguments.positional) {
        if (source.is_mapping()) {
          for (const auto& entry : source.entries()) interpreter.set_entry(result, entry.first, entry.second);
        } else if (source.is_sequence()) {
          for (const Value& pair : source.items()) {
            if (!pair.is_sequence() || pair.items().size() != 2) return interpreter.fail("dict() needs pairs of key and value");
            interpreter.set_entry(result, pair.items()[0], pair.items()[1]);
          }
        } else {
          return interpreter.fail(std::string("cannot make a dict from '") + type_name(source) + "'");
        }
      }
      for (const auto& keyword : arguments.keywords) interpreter.set_entry(result, Value::from_template(keyword.first), keyword.second);
      return result;
    });
  }
  return Value::undefined(name);
}

// A method of a value bound to it (`message.get`, `text.strip`, `list.append`), or Undefined when
// the value has no method of that name.
inline Value Interpreter::bound_method(const Value& self, const std::string& name) {
  auto method = [&](Builtin function) {
    Value bound = Value::from_builtin(name, std::move(function));
    bound.object->items.push_back(self);  // what the method is bound to, for reaches()
    return bound;
  };
  // transformers renders in Jinja2's ImmutableSandboxedEnvironment: methods that modify a list or a
  // dict are refused (reading them gives an Undefined that fails when called).
  static const char* const mutating_list_methods[] = {"append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear"};
  static const char* const mutating_dict_methods[] = {"pop", "popitem", "update", "setdefault", "clear"};
  if (self.kind == Kind::list || self.kind == Kind::dict) {
    for (const char* mutating : mutating_list_methods)
      if (self.kind == Kind::list && name == mutating) return unsafe_attribute(self, name);
    for (const char* mutating : mutating_dict_methods)
      if (self.kind == Kind::dict && name == mutating) return unsafe_attribute(self, name);
  }
  if (self.kind == Kind::string) {
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      const bool left = name != "rstrip", right = name != "lstrip";
      return method([self, left, right](Interpreter& interpreter, Arguments& arguments) {
        const Value characters = arguments.get(0, "chars");
        const bool given = characters.is_string();
        return interpreter.make_string(python_strip(self.text(), given ? &characters.text() : nullptr, left, right));
      });
    }
    if (name == "split" || name == "rsplit") {
      const bool from_right = name == "rsplit";
      return method([self, from_right](Interpreter& interpreter, Arguments& arguments) {
        const Value separator = arguments.get(0, "sep");
        const Value max_value = arguments.get(1, "maxsplit", Value::from_int(-1));
        if (separator.is_string() && separator.text().empty()) return interpreter.fail("empty separator");
        std::int64_t max_splits = is_int_like(max_value) ? as_int(max_value) : -1;
        std::vector<std::string> parts;
        if (from_right && max_splits >= 0 && separator.is_string()) {
          // rsplit with a limit: split from the end, the remainder first.
          std::string rest = self.text();
          while (max_splits-- > 0) {
            const std::size_t found = rest.rfind(separator.text());
            if (found == std::string::npos) break;
            parts.insert(parts.begin(), rest.substr(found + separator.text().size()));
            rest.resize(found);
          }
          parts.insert(parts.begin(), rest);
        } else {
          parts = python_split(self.text(), separator.is_string() ? &separator.text() : nullptr, max_splits);
        }
        if (!interpreter.check_list_size(parts.size())) return Value();
        Value list = Value::new_list();
        for (std::string& part : parts) list.items().push_back(interpreter.computed_string(std::move(part)));
        return list;
      });
    }
    if (name == "startswith" || name == "endswith") {
      const bool at_start = name == "startswith";
      return method([self, at_start](Interpreter& interpreter, Arguments& arguments) {
        const Value affix = arguments.get(0, "prefix");
        std::vector<Value> candidates;
        if (affix.is_string()) candidates.push_back(affix);
        else if (affix.kind == Kind::tuple) candidates = affix.items();
        else return interpreter.fail(std::string(at_start ? "startswith" : "endswith") + " first arg must be str or a tuple of str");
        const std::string& text = self.text();
        for (const Value& candidate : candidates) {
          if (!candidate.is_string()) return interpreter.fail("a tuple for startswith/endswith must hold strings");
          const std::string& a = candidate.text();
          if (a.size() <= text.size() && text.compare(at_start ? 0 : text.size() - a.size(), a.size(), a) == 0) return Value::from_bool(true);
        }
        return Value::from_bool(false);
      });
    }
    if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
      return method([self, name](Interpreter& interpreter, Arguments&) {
        if (name == "upper") return interpreter.make_string(text_upper(self.text()));
        if (name == "lower") return interpreter.make_string(text_lower(self.text()));
        if (name == "title") return interpreter.make_string(python_title(self.text()));
        return interpreter.make_string(python_capitalize(self.text()));
      });
    }
    if (name == "replace") {
      return method([self](Interpreter& interpreter, Arguments& arguments) {
        const Value old_text = arguments.get(0, "old"), new_text = arguments.get(1, "new");
        const Value count = arguments.get(2, "count", Value::from_int(-1));
        if (!old_text.is_string() || !new_text.is_string()) return interpreter.fail("replace() arguments must be strings");
        return interpreter.replace_text(self.text(), old_text.text(), new_text.text(), is_int_like(count) ? as_int(count) : -1);
      });
    }
    if (name == "find" || name == "rfind" || name == "count" || name == "index") {
      return method([self, name](Interpreter& interpreter, Arguments& arguments) {
        const Value needle = arguments.get(0, "sub");
        if (!needle.is_string()) return interpreter.fail(name + "() argument must be a string");
        const std::string& text = self.text();
        if (name == "count") {
          if (needle.text().empty()) return Value::from_int(static_cast<std::int64_t>(code_point_count(text) + 1));
          std::int64_t n = 0;
          for (std::size_t at = text.find(needle.text()); at != std::string::npos; at = text.find(needle.text(), at + needle.text().size())) ++n;
          return Value::from_int(n);
        }
        const std::size_t at = name == "rfind" ? text.rfind(needle.text()) : text.find(needle.text());
        if (at == std::string::npos) {
          if (name == "index") return interpreter.fail("substring not found");
          return Value::from_int(-1);
        }
        return Value::from_int(static_cast<std::int64_t>(code_point_count(text.substr(0, at))));
      });
    }
    if (name == "join") {
      return method([self](Interpreter& interpreter, Arguments& arguments) {
        std::vector<Value> items;
        if (!interpreter.iterate(arguments.get(0, "iterable"), items)) return Value();
        std::string out;
        for (std::size_t i = 0; i < items.size(); ++i) {
          if (!items[i].is_string()) return interpreter.fail("sequence item " + std::to_string(i) + ": expected str instance");
          if (i > 0) out += self.text();
          out += items[i].text();
          if (out.size() > interpreter.limits.max_output_bytes) return interpreter.make_string(std::move(out));
        }
        return interpreter.make_string(std::move(out));
      });
    }
    if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" || name == "isupper" || name == "islower") {
      return method([self, name](Interpreter&, Arguments&) {
        const std::string& text = self.text();
        bool cased = false, result = !text.empty();
        for (unsigned char c : text) {
          if (name == "isdigit") result = result && std::isdigit(c);
          else if (name == "isalpha") result = result && std::isalpha(c);
          else if (name == "isalnum") result = result && std::isalnum(c);
          else if (name == "isspace") result = result && std::isspace(c);
          else if (name == "isupper") result = result && !std::islower(c), cased = cased || std::isupper(c);
          else result = result && !std::isupper(c), cased = cased || std::islower(c);
        }
        if (name == "isupper" || name == "islower") result = result && cased;
        return Value::from_bool(result);
      });
    }
    if (name == "splitlines") {
      return method([self](Interpreter& interpreter, Arguments&) {
        Value list = Value::new_list();
        const std::string& text = self.text();
        std::size_t start = 0;
        for (std::size_t i = 0; i < text.size(); ++i) {
          if (text[i] != '\n' && text[i] != '\r') continue;
          list.items().push_back(interpreter.computed_string(text.substr(start, i - start)));
          if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
          start = i + 1;
        }
        if (start < text.size()) list.items().push_back(interpreter.computed_string(text.substr(start)));
        if (!interpreter.check_list_size(list.items().size())) return Value();
        return list;
      });
    }
    return Value();
  }
  if (self.kind == Kind::dict) {
    if (name == "get") {
      return method([self](Interpreter&, Arguments& arguments) {
        const Value key = arguments.get(0, "key");
        for (const auto& entry : self.entries())
          if (python_equal(entry.first, key)) return entry.second;
        return arguments.get(1, "default", Value::none());
      });
    }
    if (name == "items" || name == "keys" || name == "values") {
      return method([self, name](Interpreter& interpreter, Arguments&) {
        if (!interpreter.check_list_size(self.entries().size())) return Value();
        Value list = Value::new_list();
        for (const auto& entry : self.entries()) {
          if (name == "keys") list.items().push_back(entry.first);
          else if (name == "values") list.items().push_back(entry.second);
          else {
            Value pair = Value::new_list(Kind::tuple);
            pair.items().push_back(entry.first);
            pair.items().push_back(entry.second);
            list.items().push_back(std::move(pair));
          }
        }
        return list;
      });
    }
    if (name == "copy") {
      return method([self](Interpreter&, Arguments&) {
        Value copy = Value::new_dict();
        copy.entries() = self.entries();
        return copy;
      });
    }
    return Value();
  }
  if (self.kind == Kind::list || self.kind == Kind::tuple) {
    if (name == "index" || name == "count") {
      return method([self, name](Interpreter& interpreter, Arguments& arguments) {
        const Value needle = arguments.get(0, "value");
        std::int64_t count = 0;
        for (std::size_t i = 0; i < self.items().size(); ++i)
          if (python_equal(self.items()[i], needle)) {
            if (name == "index") return Value::from_int(static_cast<std::int64_t>(i));
            ++count;
          }
        if (name == "index") return interpreter.fail(interpreter.to_repr(needle) + " is not in list");
        return Value::from_int(count);
      });
    }
    return Value();
  }
  return Value();
}

inline Value Interpreter::replace_text(const std::string& text, const std::string& from, const std::string& to, std::int64_t count) {
  std::string out;
  if (from.empty()) {  // Python inserts `to` before every character and at the end
    const std::vector<std::size_t> offsets = code_point_offsets(text);
    for (std::size_t i = 0; i + 1 < offsets.size(); ++i) {
      if (count < 0 || static_cast<std::int64_t>(i) < count) out += to;
      out.append(text, offsets[i], offsets[i + 1] - offsets[i]);
      if (out.size() > limits.max_output_bytes) return make_string(std::move(out));
    }
    if (count < 0 || static_cast<std::int64_t>(offsets.size() - 1) < count) out += to;
    return make_string(std::move(out));
  }
  std::size_t start = 0;
  for (std::int64_t done = 0; count < 0 || done < count; ++done) {
    const std::size_t found = text.find(from, start);
    if (found == std::string::npos) break;
    out.append(text, start, found - start);
    out += to;
    start = found + from.size();
    if (out.size() > limits.max_output_bytes) return make_string(std::move(out));
  }
  out.append(text, start, std::string::npos);
  return make_string(std::move(out));
}

// Python's json.dumps: ", " and ": " between items without indent, "," and newline + indent with
// it; keys that are not strings become strings as Python converts them.
inline bool Interpreter::append_json(std::string& out, const Value& v, const Value& indent, const std::string& item_separator,
                                     const std::string& key_separator, bool sort_keys, std::size_t level) {
  if (level > limits.max_depth) return fail("tojson: the value is nested too deeply"), false;
  if (out.size() > limits.max_output_bytes) return fail("tojson: the text grew past " + std::to_string(limits.max_output_bytes) + " bytes"), false;
  std::string indent_unit;
  const bool indented = !(indent.is_undefined() || indent.kind == Kind::none);
  if (indent.kind == Kind::string) indent_unit = indent.text();
  else if (is_int_like(indent)) indent_unit = std::string(static_cast<std::size_t>(std::max<std::int64_t>(0, std::min<std::int64_t>(as_int(indent), 64))), ' ');
  auto newline = [&](std::size_t depth) {
    out += '\n';
    for (std::size_t i = 0; i < depth; ++i) out += indent_unit;
  };
  switch (v.kind) {
    case Kind::none: out += "null"; return true;
    case Kind::boolean: out += v.boolean ? "true" : "false"; return true;
    case Kind::integer: out += std::to_string(v.integer); return true;
    case Kind::floating:
      if (std::isnan(v.floating)) out += "NaN";
      else if (std::isinf(v.floating)) out += v.floating < 0 ? "-Infinity" : "Infinity";
      else out += python_float_repr(v.floating);
      return true;
    case Kind::string: append_json_string(out, v.text()); return true;
    case Kind::list:
    case Kind::tuple: {
      if (v.items().empty()) return out += "[]", true;
      out += '[';
      for (std::size_t i = 0; i < v.items().size(); ++i) {
        if (i > 0) out += item_separator;
        if (indented) newline(level + 1);
        if (!append_json(out, v.items()[i], indent, item_separator, key_separator, sort_keys, level + 1)) return false;
      }
      if (indented) newline(level);
      out += ']';
      return true;
    }
    case Kind::dict: {
      if (v.entries().empty()) return out += "{}", true;
      std::vector<std::pair<std::string, const Value*>> members;
      for (const auto& entry : v.entries()) {
        const Value& key = entry.first;
        std::string name;
        if (key.is_string()) name = key.text();
        else if (key.kind == Kind::none) name = "null";
        else if (key.kind == Kind::boolean) name = key.boolean ? "true" : "false";
        else if (key.kind == Kind::integer) name = std::to_string(key.integer);
        else if (key.kind == Kind::floating) name = python_float_repr(key.floating);
        else return fail(std::string("tojson: keys must be str, int, float, bool or None, not ") + type_name(key)), false;
        members.emplace_back(std::move(name), &entry.second);
      }
      if (sort_keys) std::stable_sort(members.begin(), members.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      out += '{';
      for (std::size_t i = 0; i < members.size(); ++i) {
        if (i > 0) out += item_separator;
        if (indented) newline(level + 1);
        append_json_string(out, members[i].first);
        out += key_separator;
        if (!append_json(out, *members[i].second, indent, item_separator, key_separator, sort_keys, level + 1)) return false;
      }
      if (indented) newline(level);
      out += '}';
      return true;
    }
    default: return fail(std::string("tojson: Object of type ") + type_name(v) + " is not JSON serializable"), false;
  }
}

// json.dumps(ensure_ascii=True): every non-ASCII code point as \uXXXX, astral ones as a surrogate pair.
inline std::string escape_non_ascii(const std::string& json_text) {
  std::string out;
  const std::vector<std::size_t> offsets = code_point_offsets(json_text);
  for (std::size_t i = 0; i + 1 < offsets.size(); ++i) {
    const std::uint32_t cp = decode_code_point(json_text, offsets[i], offsets[i + 1]);
    char hex[16];
    if (cp < 0x80) out += static_cast<char>(cp);
    else if (cp < 0x10000) std::snprintf(hex, sizeof hex, "\\u%04x", static_cast<unsigned>(cp)), out += hex;
    else {
      const std::uint32_t v = cp - 0x10000;
      std::snprintf(hex, sizeof hex, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)), static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
      out += hex;
    }
  }
  return out;
}

// Jinja2's attribute getter for filters (`map(attribute='a.b')`, `sort(attribute=...)`): dots
// walk down, integers index; items first, as environment.getitem does.
inline Value attribute_path(Interpreter& interpreter, const Value& item, const std::string& path) {
  Value value = item;
  std::size_t start = 0;
  while (!interpreter.failed()) {
    const std::size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool numeric = !part.empty();
    for (char c : part) numeric = numeric && std::isdigit(static_cast<unsigned char>(c));
    value = interpreter.get_item(value, numeric ? Value::from_int(std::atoll(part.c_str())) : Value::from_string(part));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return value;
}

inline Value Interpreter::apply_filter(const Expression& filter, Value subject, const std::shared_ptr<Scope>& scope) {
  // A filter chain with no subject (set and filter blocks): the innermost link takes `subject`.
  if (filter.operands[0] && filter.operands[0]->type == ExpressionType::filter && !filter.operands[0]->operands[0]) {
    subject = apply_filter(*filter.operands[0], std::move(subject), scope);
  }
  Arguments arguments = evaluate_arguments(filter, 1, scope);
  if (failed()) return Value();
  return filter_by_name(filter.name, subject, arguments);
}

inline Value Interpreter::filter_by_name(const std::string& name, const Value& value, Arguments& arguments) {
  InputTrust trust(*this, &value, nullptr, &arguments);  // a string a filter computes is trusted only from trusted inputs
  auto text_of = [&](const Value& v) { return to_text(v); };
  auto sequence_of = [&](const Value& v, std::vector<Value>& items) { return iterate(v, items); };
  if (name == "tojson") {
    // transformers' signature: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
    const Value indent = arguments.get(1, "indent", Value::none());
    std::string item_separator = indent.kind == Kind::none || indent.is_undefined() ? ", " : ",";
    std::string key_separator = ": ";
    const Value separators = arguments.get(2, "separators");
    if (separators.is_sequence() && separators.items().size() == 2 && separators.items()[0].is_string() && separators.items()[1].is_string()) {
      item_separator = separators.items()[0].text();
      key_separator = separators.items()[1].text();
    }
    std::string out;
    if (!append_json(out, value, indent, item_separator, key_separator, truthy(arguments.get(3, "sort_keys")), 0)) return Value();
    if (truthy(arguments.get(0, "ensure_ascii"))) out = escape_non_ascii(out);
    return make_string(std::move(out));
  }
  if (name == "length" || name == "count") {
    switch (value.kind) {
      case Kind::undefined: return Value::from_int(0);
      case Kind::string: return Value::from_int(static_cast<std::int64_t>(code_point_count(value.text())));
      case Kind::list:
      case Kind::tuple: return Value::from_int(static_cast<std::int64_t>(value.items().size()));
      case Kind::dict: return Value::from_int(static_cast<std::int64_t>(value.entries().size()));
      default: return fail(std::string("object of type '") + type_name(value) + "' has no len()");
    }
  }
  if (name == "default" || name == "d") {
    const bool use_default = value.is_undefined() || (truthy(arguments.get(1, "boolean")) && !truthy(value));
    return use_default ? arguments.get(0, "default_value", Value::from_template("")) : value;
  }
  if (name == "trim") {
    const Value characters = arguments.get(0, "chars");
    Value trimmed = make_string(python_strip(text_of(value), characters.is_string() ? &characters.text() : nullptr, true, true));
    trimmed.markup = value.markup;  // Markup.strip() stays Markup
    return trimmed;
  }
  if (name == "string") return value.is_string() ? value : make_string(text_of(value));
  if (name == "safe" || name == "e" || name == "escape" || name == "forceescape") {
    Value marked = value.markup && name != "forceescape" ? value : make_string(name == "safe" ? text_of(value) : html_escape(text_of(value)));
    marked.markup = true;
    return marked;
  }
  if (name == "upper") return make_string(text_upper(text_of(value)));
  if (name == "lower") return make_string(text_lower(text_of(value)));
  if (name == "capitalize") return make_string(python_capitalize(text_of(value)));
  if (name == "title") {
    // Jinja2's title: a word starts after whitespace or one of - ( { [ <.
    std::string out = text_of(value);
    bool word_start = true;
    for (char& c : out) {
      if (word_start) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      else c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      word_start = std::isspace(static_cast<unsigned char>(c)) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    }
    return make_string(std::move(out));
  }
  if (name == "replace") {
    const Value from = arguments.get(0, "old"), to = arguments.get(1, "new"), count = arguments.get(2, "count", Value::none());
    return replace_text(text_of(value), text_of(from), text_of(to), is_int_like(count) ? as_int(count) : -1);
  }
  if (name == "join") {
    std::vector<Value> items;
    if (!sequence_of(value, items)) return Value();
    // Concatenation: each item and separator keeps its provenance.
    const Value separator = arguments.get(0, "d", Value::from_template(""));
    const Value attribute = arguments.get(1, "attribute");
    TrackedText out;
    for (std::size_t i = 0; i < items.size() && !failed(); ++i) {
      if (i > 0) append_text(out, separator);
      append_text(out, attribute.is_undefined() || attribute.kind == Kind::none ? items[i] : attribute_path(*this, items[i], text_of(attribute)));
      if (out.text.size() > limits.max_output_bytes) break;
    }
    if (failed()) return Value();
    return make_tracked_string(std::move(out));
  }
  if (name == "list") {
    std::vector<Value> items;
    if (!sequence_of(value, items) || !check_list_size(items.size())) return Value();
    Value list = Value::new_list();
    list.items() = std::move(items);
    return list;
  }
  if (name == "items") {
    if (value.is_undefined()) return Value::new_list(Kind::iterator);
    if (value.kind != Kind::dict) return fail("can only get item pairs from a mapping");
    Arguments none;
    Value pairs = bound_method(value, "items").object->builtin(*this, none);
    pairs.kind = Kind::iterator;
    return pairs;
  }
  if (name == "first" || name == "last") {
    if (name == "last" && value.kind == Kind::iterator) return fail("'generator' object is not reversible");
    std::vector<Value> items;
    if (!sequence_of(value, items)) return Value();
    if (items.empty()) return Value::undefined(name == "first" ? "No first item, sequence was empty." : "No last item, sequence was empty.");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "reverse") {
    if (value.is_string()) return slice(value, Value(), Value(), Value::from_int(-1));
    std::vector<Value> items;
    const bool was_iterator = value.kind == Kind::iterator;  // reversed() needs a sequence; Jinja2 lists the rest
    if (!sequence_of(value, items)) return Value();
    std::reverse(items.begin(), items.end());
    Value list = Value::new_list(was_iterator ? Kind::list : Kind::iterator);
    list.items() = std::move(items);
    return list;
  }
  if (name == "int") {
    const Value fallback = arguments.get(0, "default", Value::from_int(0));
    if (is_int_like(value)) return Value::from_int(as_int(value));
    if (value.kind == Kind::floating) {
      if (!std::isfinite(value.floating) || std::fabs(value.floating) >= 9.2e18) return fallback;
      return Value::from_int(static_cast<std::int64_t>(value.floating));
    }
    if (value.is_string()) {
      const std::string text = python_strip(value.text(), nullptr, true, true);
      char* end = nullptr;
      errno = 0;
      const long long parsed = std::strtoll(text.c_str(), &end, 10);
      if (!text.empty() && end == text.c_str() + text.size() && errno == 0) return Value::from_int(parsed);
      // Then as a float ("3.5" is 3), in Python's decimal syntax only (strtod also reads hex).
      const bool hexadecimal = text.find_first_of("xX") != std::string::npos;
      const double as_float = std::strtod(text.c_str(), &end);
      if (!text.empty() && !hexadecimal && end == text.c_str() + text.size() && std::isfinite(as_float) && std::fabs(as_float) < 9.2e18)
        return Value::from_int(static_cast<std::int64_t>(as_float));
    }
    return fallback;
  }
  if (name == "float") {
    const Value fallback = arguments.get(0, "default", Value::from_float(0.0));
    if (value.is_number()) return Value::from_float(as_double(value));
    if (value.is_string()) {
      const std::string text = python_strip(value.text(), nullptr, true, true);
      char* end = nullptr;
      const double parsed = std::strtod(text.c_str(), &end);
      if (!text.empty() && text.find_first_of("xX") == std::string::npos && end == text.c_str() + text.size()) return Value::from_float(parsed);
    }
    return fallback;
  }
  if (name == "abs") {
    if (value.kind == Kind::floating) return Value::from_float(std::fabs(value.floating));
    if (is_int_like(value)) {
      if (as_int(value) == std::numeric_limits<std::int64_t>::min()) return fail("integer overflow");
      return Value::from_int(std::abs(as_int(value)));
    }
    return fail(std::string("bad operand type for abs(): '") + type_name(value) + "'");
  }
  if (name == "round") {
    if (!value.is_number()) return fail("round() needs a number");
    const Value precision_value = arguments.get(0, "precision", Value::from_int(0));
    const std::string method = text_of(arguments.get(1, "method", Value::from_string("common")));
    const std::int64_t precision = is_int_like(precision_value) ? std::max<std::int64_t>(0, std::min<std::int64_t>(as_int(precision_value), 30)) : 0;
    const double x = as_double(value), scale = std::pow(10.0, static_cast<double>(precision));
    if (method == "floor") return Value::from_float(std::floor(x * scale) / scale);
    if (method == "ceil") return Value::from_float(std::ceil(x * scale) / scale);
    if (method != "common") return fail("method must be 'common', 'ceil' or 'floor'");
    // Python's round(): the exact binary value rounded half to even, which printf also does.
    char buffer[400];
    std::snprintf(buffer, sizeof buffer, "%.*f", static_cast<int>(precision), x);
    return Value::from_float(std::strtod(buffer, nullptr));
  }
  if (name == "indent") {
    const Value width_value = arguments.get(0, "width", Value::from_int(4));
    const std::string indentation = width_value.is_string() ? width_value.text() : std::string(static_cast<std::size_t>(std::max<std::int64_t>(0, std::min<std::int64_t>(is_int_like(width_value) ? as_int(width_value) : 4, 1024))), ' ');
    const bool first = truthy(arguments.get(1, "first")), blank = truthy(arguments.get(2, "blank"));
    const std::string text = text_of(value);
    // Lines as Python's splitlines() of text + "\n": the last line break ends the last line.
    std::vector<std::string> lines;
    std::size_t start = 0;
    for (std::size_t i = 0; i < text.size(); ++i)
      if (text[i] == '\n' || text[i] == '\r') {
        lines.push_back(text.substr(start, i - start));
        if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
        start = i + 1;
      }
    lines.push_back(text.substr(start));
    std::string out;
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) out += '\n';
      if ((i > 0 || first) && (blank || !lines[i].empty())) out += indentation;
      out += lines[i];
      if (out.size() > limits.max_output_bytes) break;
    }
    return make_string(std::move(out));
  }
  if (name == "wordcount") return Value::from_int(static_cast<std::int64_t>(python_split(text_of(value), nullptr, -1).size()));
  if (name == "unique" || name == "sort" || name == "dictsort") {
    const bool case_sensitive = truthy(arguments.get(name == "sort" ? 1 : 0, "case_sensitive"));
    const Value attribute = arguments.get(name == "sort" ? 2 : 1, "attribute");
    std::vector<Value> items;
    if (name == "dictsort") {
      if (value.kind != Kind::dict) return fail("dictsort needs a mapping");
      Arguments none;
      Value pairs = bound_method(value, "items").object->builtin(*this, none);
      if (failed()) return Value();
      items = pairs.items();
    } else if (!sequence_of(value, items)) {
      return Value();
    }
    // The key a filter compares: the attribute if asked for, lowercased unless case_sensitive.
    auto key_of = [&](const Value& item) {
      Value key = item;
      if (name == "dictsort") {
        const bool by_value = text_of(arguments.get(1, "by", Value::from_string("key"))) == "value";
        key = item.items()[by_value ? 1 : 0];
      } else if (!attribute.is_undefined() && attribute.kind != Kind::none) {
        key = attribute_path(*this, item, text_of(attribute));
      }
      if (!case_sensitive && key.is_string()) key = Value::from_string(text_lower(key.text()));
      return key;
    };
    std::vector<Value> keys;
    for (const Value& item : items) keys.push_back(key_of(item));
    if (!charge(items.size())) return Value();
    Value list = Value::new_list(name == "unique" ? Kind::iterator : Kind::list);
    if (name == "unique") {
      std::vector<Value> seen;
      for (std::size_t i = 0; i < items.size() && charge(seen.size() / 16); ++i) {
        bool duplicate = false;
        for (const Value& s : seen) duplicate = duplicate || python_equal(s, keys[i]);
        if (!duplicate) seen.push_back(keys[i]), list.items().push_back(items[i]);
      }
      return list;
    }
    std::vector<std::size_t> order(items.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    const bool descending = truthy(arguments.get(name == "sort" ? 0 : 2, "reverse"));
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      if (failed()) return false;
      return descending ? less(keys[b], keys[a]) : less(keys[a], keys[b]);
    });
    if (failed()) return Value();
    for (std::size_t i : order) list.items().push_back(items[i]);
    return list;
  }
  if ((name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject" || name == "map") && !truthy(value)) {
    return Value::new_list(Kind::iterator);  // Jinja2 starts these with `if value:`, so None and Undefined give nothing
  }
  if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
    const bool by_attribute = name == "selectattr" || name == "rejectattr";
    const bool keep_when = name == "selectattr" || name == "select";
    std::vector<Value> items;
    if (!sequence_of(value, items)) return Value();
    std::string attribute;
    std::size_t first_test_argument = 0;
    if (by_attribute) {
      if (arguments.positional.empty()) return fail(name + " needs an attribute name");
      attribute = text_of(arguments.positional[0]);
      first_test_argument = 1;
    }
    Value list = Value::new_list(Kind::iterator);
    for (const Value& item : items) {
      if (failed() || !charge()) return Value();
      const Value subject = by_attribute ? attribute_path(*this, item, attribute) : item;
      bool passed;
      if (arguments.positional.size() > first_test_argument) {
        Arguments test_arguments;
        test_arguments.positional.assign(arguments.positional.begin() + static_cast<std::ptrdiff_t>(first_test_argument) + 1, arguments.positional.end());
        passed = apply_test(text_of(arguments.positional[first_test_argument]), subject, test_arguments);
      } else {
        passed = truthy(subject);
      }
      if (passed == keep_when) list.items().push_back(item);
    }
    if (failed()) return Value();
    return list;
  }
  if (name == "map") {
    std::vector<Value> items;
    if (!sequence_of(value, items)) return Value();
    Value list = Value::new_list(Kind::iterator);
    const Value attribute = arguments.get(Arguments::keyword_only, "attribute");
    for (const Value& item : items) {
      if (failed() || !charge()) return Value();
      if (!attribute.is_undefined()) {
        Value mapped = attribute_path(*this, item, text_of(attribute));
        if (mapped.is_undefined() && arguments.has(Arguments::keyword_only, "default")) mapped = arguments.get(Arguments::keyword_only, "default");
        list.items().push_back(mapped);
      } else {
        if (arguments.positional.empty()) return fail("map needs a filter name or attribute=");
        Arguments filter_arguments;
        filter_arguments.positional.assign(arguments.positional.begin() + 1, arguments.positional.end());
        filter_arguments.keywords = arguments.keywords;
        list.items().push_back(filter_by_name(text_of(arguments.positional[0]), item, filter_arguments));
      }
    }
    if (failed()) return Value();
    return list;
  }
  if (name == "sum" || name == "min" || name == "max") {
    std::vector<Value> items;
    if (!sequence_of(value, items)) return Value();
    const Value attribute = arguments.get(name == "sum" ? 0 : 1, "attribute");
    for (Value& item : items)
      if (!attribute.is_undefined() && attribute.kind != Kind::none) item = attribute_path(*this, item, text_of(attribute));
    if (name == "sum") {
      Value total = arguments.get(1, "start", Value::from_int(0));
      for (const Value& item : items) total = binary_operation("+", total, item);
      return total;
    }
    if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
    const bool case_sensitive = truthy(arguments.get(0, "case_sensitive"));
    std::size_t best = 0;
    for (std::size_t i = 1; i < items.size() && !failed(); ++i) {
      Value a = items[i], b = items[best];
      if (!case_sensitive && a.is_string() && b.is_string()) a = Value::from_string(text_lower(a.text())), b = Value::from_string(text_lower(b.text()));
      if (name == "min" ? less(a, b) : less(b, a)) best = i;
    }
    return items[best];
  }
  if (name == "batch") {
    // Lists of `count` items, the last one padded with fill_with when given.
    const Value count_value = arguments.get(0, "linecount");
    if (!is_int_like(count_value) || as_int(count_value) <= 0) return fail("batch needs a positive count");
    const std::size_t count = static_cast<std::size_t>(as_int(count_value));
    const bool fill = arguments.has(1, "fill_with");
    std::vector<Value> items;
    if (!sequence_of(value, items)) return Value();
    Value batches = Value::new_list(Kind::iterator);
    for (std::size_t i = 0; i < items.size(); i += count) {
      Value batch = Value::new_list();
      for (std::size_t k = i; k < i + count && (k < items.size() || fill); ++k) batch.items().push_back(k < items.size() ? items[k] : arguments.get(1, "fill_with"));
      batches.items().push_back(std::move(batch));
    }
    return batches;
  }
  return fail("no filter named '" + name + "'");
}

inline bool Interpreter::apply_test(const std::string& name, const Value& value, const Arguments& arguments) {
  const Value argument = arguments.get(0, "value");
  if (name == "defined") return !value.is_undefined();
  if (name == "undefined") return value.is_undefined();
  if (name == "none") return value.kind == Kind::none;
  if (name == "string") return value.is_string();
  if (name == "mapping") return value.kind == Kind::dict;
  // Jinja2's Undefined is iterable and a sequence (empty), so these tests accept it.
  if (name == "iterable") return value.is_undefined() || value.is_string() || value.is_sequence() || value.kind == Kind::dict || value.kind == Kind::iterator;
  if (name == "sequence") return value.is_undefined() || value.is_string() || value.is_sequence() || value.kind == Kind::dict;
  if (name == "number") return value.is_number();
  if (name == "integer") return value.kind == Kind::integer;
  if (name == "float") return value.kind == Kind::floating;
  if (name == "boolean") return value.kind == Kind::boolean;
  if (name == "true") return value.kind == Kind::boolean && value.boolean;
  if (name == "false") return value.kind == Kind::boolean && !value.boolean;
  if (name == "callable") return value.kind == Kind::callable;
  if (name == "equalto" || name == "eq" || name == "==") return python_equal(value, argument);
  if (name == "ne" || name == "!=") return !python_equal(value, argument);
  if (name == "lt" || name == "lessthan" || name == "<") return less(value, argument);
  if (name == "gt" || name == "greaterthan" || name == ">") return less(argument, value);
  if (name == "le" || name == "<=") return !less(argument, value) && !failed();
  if (name == "ge" || name == ">=") return !less(value, argument) && !failed();
  if (name == "in") return contains(argument, value);
  if (name == "sameas") {
    if (value.kind != argument.kind) return false;
    if (value.object || argument.object) return value.object == argument.object;
    return python_equal(value, argument);
  }
  if (name == "lower") return value.is_string() && text_lower(value.text()) == value.text();
  if (name == "upper") return value.is_string() && text_upper(value.text()) == value.text();
  if (name == "escaped") return false;
  if (name == "odd" || name == "even" || name == "divisibleby") {
    if (!is_int_like(value)) return fail(std::string("the test '") + name + "' needs an integer"), false;
    if (name == "odd") return as_int(value) % 2 != 0;
    if (name == "even") return as_int(value) % 2 == 0;
    if (!is_int_like(argument) || as_int(argument) == 0) return fail("divisibleby needs a non-zero integer"), false;
    return as_int(value) % as_int(argument) == 0;
  }
  fail("no test named '" + name + "'");
  return false;
}

}  // namespace jinja
}  // namespace detail
LAMINA_NAMESPACE_END
