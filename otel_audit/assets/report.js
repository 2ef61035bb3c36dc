(function () {
  var hidden = {};
  function applyOutcomes() {
    document.querySelectorAll('.mark').forEach(function (m) {
      m.classList.toggle('hidden', !!hidden[m.getAttribute('data-outcome')]);
    });
  }
  document.querySelectorAll('input[data-outcome-toggle]').forEach(function (box) {
    box.addEventListener('change', function () {
      hidden[box.getAttribute('data-outcome-toggle')] = !box.checked; applyOutcomes();
    });
  });
  document.querySelectorAll('button[data-lanes]').forEach(function (button) {
    button.addEventListener('click', function () {
      var kind = button.getAttribute('data-lanes');
      document.querySelectorAll('svg.timeline').forEach(function (svg) {
        svg.classList.toggle('hidden', svg.getAttribute('data-lanes') !== kind);
      });
      document.querySelectorAll('button[data-lanes]').forEach(function (b) { b.classList.toggle('active', b === button); });
    });
  });
  // A link to report.html#by-principal opens with the principal lanes shown.
  if (location.hash === '#by-principal') {
    document.querySelector('button[data-lanes=principal]').click();
  }
  var search = document.getElementById('search');
  search.addEventListener('input', function () {
    var needle = search.value.toLowerCase();
    document.querySelectorAll('table.filterable tbody tr').forEach(function (row) {
      row.classList.toggle('hidden', needle !== '' && row.textContent.toLowerCase().indexOf(needle) < 0);
    });
  });
  var marks = 0, accesses = 0;
  document.querySelectorAll('svg.timeline[data-lanes=resource] .mark').forEach(function (m) {
    marks += 1; accesses += parseInt(m.getAttribute('data-count'), 10);
  });
  document.body.setAttribute('data-marks', String(marks));
  document.body.setAttribute('data-accesses', String(accesses));
  document.body.setAttribute('data-ready', 'true');
})();
